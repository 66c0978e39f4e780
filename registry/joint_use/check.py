"""The joint-use key file's part of `mamoru registry check` (see `registry.backup.check`)."""

from __future__ import annotations

from kernel.errors import StoreDamagedError
from registry.backup.check import CheckReport
from registry.context import RegistryContext
from registry.joint_use.errors import StoreKeysError
from registry.joint_use.keys import load_store_keys


def check_store_keys(ctx: RegistryContext, report: CheckReport) -> None:
    """The key file must open under this registry's master key (when joint use is set up)."""
    path = ctx.paths.joint_use_keys
    if not path.is_file():
        return
    try:
        load_store_keys(path, ctx.master_key)
    except StoreKeysError as exc:
        report.damaged.append(StoreDamagedError(
            path, str(exc), "put it back from the file-system backup of the data folder (a new "
                            "key pair would have to be published to every member)"))
    report.checked.append("joint-use keys")

