"""Imports one joint-use bundle and SIGKILLs itself at the N-th call into registry code.

Used by test_joint_use.py, like crash_driver.py is by test_crash_safety.py:

    python -m tests.registry.joint_use_crash_driver DATA_DIR STORE_ID SCHEME BUNDLE KILL_AT NOW
    KILL_AT: 0 = run to the end and print the call count
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.registry.crash_driver import _arm


def main() -> None:
    data_dir, store_id, scheme_path, bundle_path = sys.argv[1:5]
    kill_at, now_text = sys.argv[5], sys.argv[6]
    from mamoru.settings import get_settings
    from mamoru.wiring import index_spec, registry_paths
    from registry.clock import parse_timestamp
    from registry.config import RegistrySettings
    from registry.context import open_registry
    from registry.joint_use.scheme import scheme_in_force
    from registry.joint_use.sync import import_bundle

    settings = get_settings(data_dir=Path(data_dir), registry=RegistrySettings(
        store_id=store_id, joint_use_scheme=Path(scheme_path)))
    ctx = open_registry(registry_paths(settings), settings.registry, index_spec(settings))
    scheme = scheme_in_force(ctx)
    blob = Path(bundle_path).read_bytes()
    calls = _arm(kill_at)
    import_bundle(ctx, scheme, blob, parse_timestamp(now_text))
    sys.setprofile(None)
    ctx.close()
    sys.stdout.write(f"{calls[0]}\n")


if __name__ == "__main__":
    main()
