"""The admin in a real browser: view-only support staff inspect generations and cannot change
them; a superuser creates an API key (shown once) and revokes it with the action."""

import re
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.e2e_server import LiveServer

pytestmark = pytest.mark.e2e

KEY_PATTERN = re.compile(r"rp_[0-9A-Za-z]{12}_[0-9A-Za-z]{39}")
PASSWORD = "a-browser-test-password"
_CREATE_STAFF = f"""
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
User = get_user_model()
support = User.objects.create_user("support", password="{PASSWORD}", is_staff=True)
support.user_permissions.set(
    Permission.objects.filter(codename__in=["view_generation", "view_apikey"])
)
User.objects.create_superuser("root", "root@example.com", "{PASSWORD}")
print(User.objects.get(username="demo").pk)
"""


@pytest.fixture(scope="module")
def admin_site(live: LiveServer) -> dict[str, Any]:
    """The admin's URL, with a view-only `support` user and a `root` superuser."""
    demo_user_id = int(live.manage("shell", "--verbosity", "0", "-c", _CREATE_STAFF))
    return {"url": live.base_url.removesuffix("/api/v1") + "/admin/", "demo_user_id": demo_user_id}


def log_in(browser: Any, admin_site: dict[str, Any], username: str) -> Any:
    context = browser.new_context()
    page = context.new_page()
    page.goto(admin_site["url"])
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")
    return page


def rows(page: Any) -> list[str]:
    return page.locator("#result_list tbody tr").all_inner_texts()


def api_status(live: LiveServer, raw_key: str) -> int:
    request = urllib.request.Request(
        f"{live.base_url}/generations", headers={"Authorization": f"Bearer {raw_key}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_browser_admin_view_only_staff_inspect_but_cannot_change(
    browser, live: LiveServer, admin_site, artifacts
):
    # given support staff holding only the view permissions
    page = log_in(browser, admin_site, "support")
    page.goto(f"{admin_site['url']}generations/generation/")
    assert len(rows(page)) == 4
    # when they filter by status ...
    status_filter = page.locator('#changelist-filter details[data-filter-title="status"]')
    status_filter.get_by_role("link", name="Succeeded").click()
    page.wait_for_url(re.compile(r"status__exact=succeeded"))
    assert len(rows(page)) == 3
    assert all("succeeded" in row for row in rows(page))
    # ... search by external_id within the filter ...
    page.fill("#searchbar", "mug-2")
    page.press("#searchbar", "Enter")
    page.wait_for_url(re.compile(r"q=mug-2"))
    assert len(rows(page)) == 2
    assert all("mug-2" in row for row in rows(page))
    page.screenshot(path=artifacts / "admin-generations-filtered.png", full_page=True)
    # ... and find the rotating one by its external_id
    page.goto(f"{admin_site['url']}generations/generation/?q=lamp")
    (row,) = rows(page)
    assert "rotating" in row
    # no action is offered: "expire now" needs "change", the download its own permission
    actions = page.locator("select[name=action] option").all_inner_texts()
    assert not any("Download selected as zip" in action for action in actions)
    assert not any("Expire now" in action for action in actions)
    # then the detail page shows everything and offers nothing to edit
    page.locator("#result_list tbody tr th a, #result_list tbody tr td a").first.click()
    page.wait_for_url(re.compile(r"/\d+/change/"))
    page.screenshot(path=artifacts / "admin-generation-view-only.png", full_page=True)
    form = page.locator("#content-main form")
    assert "lamp" in form.inner_text()
    assert page.locator(".readonly").count() >= 10
    assert form.locator("input:not([type=hidden]), select, textarea").count() == 0
    assert page.locator("input[name=_save], input[name=_continue]").count() == 0
    assert page.locator(".deletelink").count() == 0
    page.context.close()


def test_browser_admin_superuser_creates_a_key_shown_once_and_revokes_it(
    browser, live: LiveServer, admin_site, artifacts
):
    # given a superuser on the "add API key" form
    page = log_in(browser, admin_site, "root")
    page.goto(f"{admin_site['url']}rotate/apikey/add/")
    # when they create a key for the demo user
    page.fill("#id_owner", str(admin_site["demo_user_id"]))
    page.fill("#id_name", "browser test key")
    page.click("input[name=_save]")
    # then the raw key is shown once, on the response page
    page.wait_for_selector("#raw-key")
    raw_key = page.input_value("#raw-key")
    assert KEY_PATTERN.fullmatch(raw_key)
    page.screenshot(path=artifacts / "admin-key-created.png", full_page=True)
    assert api_status(live, raw_key) == 200
    # and never again: not on its change page, not in the list
    page.click("text=Done")
    page.wait_for_url(re.compile(r"/rotate/apikey/\d+/change/$"))
    assert raw_key not in page.content()
    assert raw_key[3:15] in page.content()  # its public prefix is
    page.goto(f"{admin_site['url']}rotate/apikey/?q=browser+test+key")
    assert raw_key not in page.content()
    # when they revoke it with the action
    (row,) = rows(page)
    assert "browser test key" in row
    page.locator("#result_list tbody tr input.action-select").check()
    page.select_option("select[name=action]", "revoke_selected")
    page.click("button[name=index]")
    # then the admin says so and the key stops working at once
    page.wait_for_selector(".messagelist")
    assert "Revoked 1 API key(s)." in page.locator(".messagelist").inner_text()
    page.screenshot(path=artifacts / "admin-key-revoked.png", full_page=True)
    assert api_status(live, raw_key) == 401
    page.goto(f"{admin_site['url']}rotate/apikey/?state=revoked&q=browser+test+key")
    assert len(rows(page)) == 1
    page.context.close()
