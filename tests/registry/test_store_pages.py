"""The tablet for a chain's stores (issue 15, item 1; G-SEC-1).

The navigation offers exactly the pages a person may open, by role and by
store: walking every link of each role's page, in a store and at the chain
office, answers 200, and every page left out answers a refusal. The chain
office's alerts page has a store picker (a plain GET form); a store's people
have none and always see their own store. Real SQLCipher files, real faces.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape

from registry.accounts import devices, users
from registry.accounts.stores import add_store
from registry.api.html import NAV
from registry.domain import Role
from tests.registries import OBAMA, PASSWORD, T0, Registry
from tests.registry.people import Clock, Person, box_alert, log_in, start_app

GINZA, UMEDA = "ginza", "umeda"
NAMES = {GINZA: "銀座店", UMEDA: "梅田<店>"}  # a name the page must escape
# Chain office users of the template registry, one per role.
OFFICE = {Role.STAFF: "staff", Role.MANAGER: "mgr1", Role.AUDITOR: "auditor",
          Role.ADMIN: "admin"}
NAV_LINK = re.compile(r'<a class="nav-item[^"]*" href="([^"]+)"')


@dataclass
class Chain:
    reg: Registry
    client: TestClient
    alerts: dict[str, str]  # store id -> the alert its box sent

    def as_(self, username: str) -> Person:
        return log_in(self.client, username)


def _store_user(role: Role) -> str:
    return f"{GINZA}-{role.value}"


def _send(reg: Registry, store_id: str, entry_id: str) -> str:
    devices.add_device(reg.ctx, admin=reg.user("admin"), name=f"box-{store_id}", now=T0,
                       store_id=store_id)
    return box_alert(reg, f"box-{store_id}", entry_id, score=0.7)


@pytest.fixture
def chain(registry: Registry) -> Iterator[Chain]:
    """Two stores with a box and an alert each; Ginza has a trained user of every role."""
    ctx, admin = registry.ctx, registry.user("admin")
    with ctx.writing():
        for store_id, name in NAMES.items():
            add_store(ctx.repo, ctx.audit, admin=admin, store_id=store_id, name=name, now=T0)
        for role in Role:
            users.add_user(ctx.repo, ctx.audit, actor="admin", username=_store_user(role),
                           role=role, password=PASSWORD, now=T0, store_id=GINZA)
            users.record_training(ctx.repo, ctx.audit, admin=admin,
                                  username=_store_user(role), now=T0)
    entry_id = registry.register(OBAMA)
    alerts = {store_id: _send(registry, store_id, entry_id) for store_id in NAMES}
    with start_app(registry, Clock()) as client:
        yield Chain(registry, client, alerts)


def _nav(page: str) -> list[str]:
    return NAV_LINK.findall(page)


def _home(person: Person) -> str:
    """The person's first page (where `/` sends them), as HTML; for a role with no page
    in its scope, `/` itself: 403 and one line saying so."""
    start = person.get("/", follow_redirects=False)
    if start.status_code == 403:
        assert "There is no tablet page for this role" in person.get("/?lang=en").text
        return start.text
    assert start.status_code == 303, start.text
    home = person.get(start.headers["location"])
    assert home.status_code == 200, home.text
    return home.text


@pytest.mark.parametrize("scope", ["store", "office"])
@pytest.mark.parametrize("role", list(Role))
def test_the_nav_offers_exactly_the_pages_the_person_may_open(
        chain: Chain, role: Role, scope: str) -> None:
    """G-SEC-1: every nav link opens (200); every page left out is refused (403)."""
    person = chain.as_(_store_user(role) if scope == "store" else OFFICE[role])
    shown = _nav(_home(person))
    assert bool(shown) is not (role is Role.AUDITOR and scope == "store")  # the trail only
    for href in shown:
        page = person.get(href)
        assert page.status_code == 200, f"{person.username}: {href} answers {page.status_code}"
        assert _nav(page.text) == shown  # the same nav on every page
    for href in {page.href for page in NAV} - set(shown):
        assert person.get(href).status_code == 403, f"{person.username}: {href} not offered"


def test_store_managers_and_auditors_get_no_audit_link(chain: Chain) -> None:
    """The trail spans every store: a store's overseers are refused it, so it is not offered."""
    for role in (Role.MANAGER, Role.AUDITOR, Role.ADMIN):
        person = chain.as_(_store_user(role))
        assert "/audit" not in _nav(_home(person))
        assert person.get("/audit").status_code == 403
    assert "/audit" in _nav(_home(chain.as_("auditor")))


OPTION = re.compile(r'<option value="([^"]*)"( selected)?>([^<]*)</option>')
STORE_OF_ALERT = re.compile(r'class="alert-store" data-store-id="([^"]+)">([^<]*)</dd>')


def _picker(page: str) -> list[tuple[str, bool, str]]:
    """(value, selected, label) of the store picker's options; [] when there is none."""
    if 'id="store-picker"' not in page:
        return []
    form = page[page.index('id="store-picker"'):]
    form = form[:form.index("</form>")]
    assert 'method="get" action="/alerts"' in page  # a plain form: no script needed
    return [(value, bool(selected), label) for value, selected, label in OPTION.findall(form)]


def test_the_chain_office_picks_a_store_on_the_alerts_page(chain: Chain) -> None:
    """Issue 15, item 1: the chain office chooses the store from a list, 'all stores' first;
    every alert names its store (escaped); the choice filters as `?store=` does."""
    office = chain.as_("mgr1")
    every = office.get("/alerts?lang=en")
    assert every.status_code == 200, every.text
    stores = [(s.store_id, False, str(escape(s.name))) for s in chain.reg.ctx.repo.stores()]
    assert (GINZA, False, "銀座店") in stores and (UMEDA, False, "梅田&lt;店&gt;") in stores
    assert _picker(every.text) == [("", True, "All stores"), *stores]  # the default store too
    assert sorted(STORE_OF_ALERT.findall(every.text)) == [(GINZA, "銀座店"),
                                                          (UMEDA, "梅田&lt;店&gt;")]
    assert chain.alerts[GINZA] in every.text and chain.alerts[UMEDA] in every.text
    assert "全店舗" in _picker(office.get("/alerts?lang=ja").text)[0][2]

    umeda = office.get(f"/alerts?store={UMEDA}")
    assert umeda.status_code == 200, umeda.text
    assert [v for v, selected, _ in _picker(umeda.text) if selected] == [UMEDA]
    assert STORE_OF_ALERT.findall(umeda.text) == [(UMEDA, "梅田&lt;店&gt;")]
    assert chain.alerts[UMEDA] in umeda.text and chain.alerts[GINZA] not in umeda.text

    everything = office.get("/alerts?store=")  # the picker's "all stores"
    assert everything.status_code == 200, everything.text
    assert [v for v, selected, _ in _picker(everything.text) if selected] == [""]
    assert len(STORE_OF_ALERT.findall(everything.text)) == 2
    assert office.get("/alerts?store=kobe").status_code == 404
    assert office.get("/alerts?store=bad%20id").status_code == 422


def test_a_stores_people_get_no_store_picker(chain: Chain) -> None:
    """A store's staff always see their own store: nothing to pick, another store is 404."""
    person = chain.as_(_store_user(Role.STAFF))
    page = person.get("/alerts")
    assert page.status_code == 200, page.text
    assert _picker(page.text) == [] and "<select" not in page.text.split("alert-list")[0]
    assert STORE_OF_ALERT.findall(page.text) == [(GINZA, "銀座店")]
    assert person.get(f"/alerts?store={UMEDA}").status_code == 404
    assert person.get("/alerts?store=").status_code == 200  # "all" means their own
