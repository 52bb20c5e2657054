"""The unsubscribe and preferences pages as a person uses them: headless
Chromium (Debian's chromium and chromium-driver, installed by ``make browser``)
driven by Selenium against the running local stack."""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from chalicelib.unsubscribe_tokens import sign
from infra.local_stack import LOCAL_UNSUBSCRIBE_KEYS
from tests.e2e.conftest import Stack

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
KEYS = os.environ.get("NUDGE_UNSUBSCRIBE_KEYS", LOCAL_UNSUBSCRIBE_KEYS)
WAIT_SECONDS = 15
#: Each would show as an element, run script or open a dialog if the page did not escape it.
XSS = '<img src=x onerror="alert(1)"><script>document.title="owned"</script>'


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} are needed: `make browser` installs them "
                    "(apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="nudge-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # Without the networking flags Chromium waits on services this machine cannot reach.
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1024,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def person(stack: Stack, **traits: Any) -> str:
    user_id = f"browser-{uuid.uuid4().hex[:10]}"
    response = stack.post("/v1/identify", {"userId": user_id, "traits": {"email": f"{user_id}@example.com", **traits}})
    assert response.status_code == 200, response.text
    return user_id


def link(stack: Stack, page: str, user_id: str, topic: str | None = "offers") -> str:
    token = sign(KEYS, f"user:{user_id}", "email", topic, datetime.now(timezone.utc))
    return f"{stack.url}/v1/{page}?token={token}"


def subscriptions(stack: Stack, user_id: str) -> dict[str, Any]:
    response = stack.admin_get(f"/v1/profiles/{user_id}/subscriptions")
    assert response.status_code == 200, response.text
    return response.json()


def topic_row(body: dict[str, Any], key: str) -> dict[str, Any]:
    channel, _, topic = key.partition(":")
    return next(r for r in body["topics"] if (r["channel"], r["id"]) == (channel, topic))


def status_text(driver: Any) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    element = WebDriverWait(driver, WAIT_SECONDS).until(
        expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, "p[role=status]")))
    return element.text


def press(driver: Any, button_id: str) -> None:
    """Click a button or link and wait until the page it leads to has replaced this one."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    button = driver.find_element(By.ID, button_id)
    button.click()
    WebDriverWait(driver, WAIT_SECONDS).until(expected_conditions.staleness_of(button))


def box(driver: Any, name: str, value: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f"input[type=checkbox][name={name}][value='{value}']")


def test_confirming_on_the_unsubscribe_page_leaves_the_topic(stack: Stack, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    user_id = person(stack)
    browser.get(link(stack, "unsubscribe", user_id))
    assert "Offers and promotions" in browser.find_element(By.TAG_NAME, "main").text
    assert topic_row(subscriptions(stack, user_id), "email:offers")["subscribed"] is True

    press(browser, "confirm")

    assert status_text(browser) == "You are unsubscribed from Offers and promotions emails."
    offers = topic_row(subscriptions(stack, user_id), "email:offers")
    assert offers["subscribed"] is False
    assert offers["consent"]["source"] == "unsubscribe-page"
    # The page's link leads on to the preferences, where the topic shows as left.
    press(browser, "preferences-link")
    assert not box(browser, "topic", "email:offers").is_selected()
    assert box(browser, "topic", "email:news").is_selected()


def test_saving_the_preferences_page_changes_the_subscriptions(stack: Stack, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    user_id = person(stack)
    browser.get(link(stack, "preferences", user_id, topic=None))
    assert browser.find_elements(By.TAG_NAME, "script") == []  # the page works without JavaScript
    news = box(browser, "topic", "email:news")
    assert news.is_selected()

    news.click()
    box(browser, "all", "email").click()
    press(browser, "save")

    assert status_text(browser) == "Your preferences are saved."
    assert box(browser, "all", "email").is_selected()
    assert not any(box(browser, "topic", key).is_selected() for key in ("email:offers", "email:news"))
    shown = subscriptions(stack, user_id)
    assert not any(r["subscribed"] for r in shown["topics"] if r["channel"] == "email")
    changes = {h["key"]: (h["subscribed"], h["source"]) for h in shown["history"]}
    assert changes["email:*"] == (False, "preferences-page")
    assert changes["email:news"] == (False, "preferences-page")


def test_rejoining_a_topic_on_the_preferences_page(stack: Stack, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    user_id = person(stack)
    browser.get(link(stack, "preferences", user_id))
    box(browser, "all", "email").click()
    press(browser, "save")
    status_text(browser)

    box(browser, "all", "email").click()
    box(browser, "topic", "email:lifecycle").click()
    press(browser, "save")

    assert status_text(browser) == "Your preferences are saved."
    shown = subscriptions(stack, user_id)
    assert topic_row(shown, "email:lifecycle")["subscribed"] is True
    assert topic_row(shown, "email:offers")["subscribed"] is False


def test_a_script_in_a_persons_traits_shows_as_text(stack: Stack, browser: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    user_id = person(stack)
    response = stack.post("/v1/identify", {"userId": user_id, "traits": {"email": f"{XSS}@example.com"}})
    assert response.status_code == 200, response.text

    browser.get(link(stack, "preferences", user_id))

    assert f"For {XSS}@example.com" in browser.find_element(By.CSS_SELECTOR, "p.who").text
    assert browser.find_elements(By.CSS_SELECTOR, "main img, main script") == []
    assert browser.title == "Your preferences"
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - reading it is what raises
    # The form still works for this person.
    press(browser, "save")
    assert status_text(browser) == "Your preferences are saved."


def test_an_altered_link_shows_a_page_saying_it_cannot_be_used_and_changes_nothing(stack: Stack,
                                                                                     browser: Any) -> None:
    from selenium.webdriver.common.by import By

    user_id = person(stack)
    good = link(stack, "unsubscribe", user_id)
    browser.get(good[:-2] + ("AA" if not good.endswith("AA") else "BB"))

    assert browser.find_element(By.TAG_NAME, "h1").text == "This link cannot be used"
    assert "token has an invalid signature" in browser.find_element(By.CSS_SELECTOR, "p[role=alert]").text
    assert browser.find_elements(By.TAG_NAME, "form") == []
    assert subscriptions(stack, user_id)["history"] == []
