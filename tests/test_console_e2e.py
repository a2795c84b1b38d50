"""The web console in a real Chromium, against the real platform (tests/harness.py: every service
and the provider stand-ins in this process; the gateway serves the console's build).

Playwright drives the OS's Chromium (/usr/bin/chromium; `make test` installs Debian's package when
it is missing). These tests fail, never skip, without it. Screenshots of each screen go to
test-artifacts/console/; axe-core (the console's npm package) audits each screen in the page.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import USER_OPENAI_KEY, Platform, running_platform
from playwright.async_api import Browser, BrowserContext, Locator, Page, async_playwright, expect

ROOT = Path(__file__).resolve().parents[1]
CONSOLE_DIST = ROOT / "console" / "dist"
ARTIFACTS = ROOT / "test-artifacts" / "console"
AXE_SCRIPT = ROOT / "console" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = Path("/usr/bin/chromium")
# As root, without a sandbox; nothing that reaches out to Google's hosts (the network is closed).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

USER_MULTIMODAL_KEY = "sk-user-byok-multimodal-cccc7777"
USER_IMAGE_KEY = "sk-user-byok-images-dddd6666"
ALL_KEYS = (USER_OPENAI_KEY, USER_MULTIMODAL_KEY, USER_IMAGE_KEY)


@pytest.fixture(scope="session")
def console_dist() -> Path:
    """The console's build, made (or brought up to date) by the Makefile's own target."""
    make = shutil.which("make")
    assert make, "make is required to build the console (make console)"
    done = subprocess.run(
        [make, "-s", "console"], cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert (CONSOLE_DIST / "index.html").is_file()
    return CONSOLE_DIST


@pytest.fixture
async def platform(
    database_url: str, redis_url: str, redis_prefix: str, console_dist: Path
) -> AsyncIterator[Platform]:
    async with running_platform(
        database_url, redis_url, redis_prefix, gateway={"console_dir": console_dist}
    ) as p:
        yield p


@pytest.fixture(scope="session")
def chromium() -> Path:
    # Never a skip: CI must run these.
    assert CHROMIUM.exists(), (
        "Chromium is missing: `make test` installs Debian's chromium package "
        "(apt-get install chromium)"
    )
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        await browser.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(viewport={"width": 1280, "height": 860})
    # axe-core is added the way a browser extension would (before the page's own scripts, outside
    # the page's CSP), so the audit does not need the CSP loosened.
    await context.add_init_script(path=str(AXE_SCRIPT))
    context.set_default_timeout(15_000)
    yield context
    await context.close()


class Console:
    """One browser tab of the console, with the errors it logged."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def csp_violations(self) -> list[str]:
        return [e for e in self.errors if "Content Security Policy" in e]

    async def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    async def audit(self, what: str) -> None:
        """axe-core over the page as it is: no serious or critical violation."""
        result: dict[str, Any] = await self.page.evaluate(
            "async () => await axe.run(document, { resultTypes: ['violations'] })"
        )
        bad = [
            f"{v['id']} ({v['impact']}): {v['help']} at "
            + ", ".join(str(node["target"]) for node in v["nodes"][:3])
            for v in result["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert not bad, f"accessibility violations on {what}: {bad}"

    def dialog(self) -> Locator:
        return self.page.get_by_role("dialog", name="LLM settings")

    def panel(self) -> Locator:
        # Only the selected tab's panel is visible; hidden ones are not in the accessibility tree.
        return self.dialog().get_by_role("tabpanel")

    async def open_settings(self) -> None:
        await self.page.get_by_role("button", name="LLM settings").click()
        await expect(self.dialog()).to_be_visible()

    async def tab(self, name: str) -> Locator:
        await self.dialog().get_by_role("tab", name=re.compile(name)).click()
        return self.panel()


async def sign_in(context: BrowserContext, platform: Platform, user: str, **claims: Any) -> Console:
    console = Console(await context.new_page())
    token = platform.token(user, **claims)
    await console.page.goto(f"{platform.gateway_url}/#token={token}")
    await expect(console.page.get_by_role("button", name="LLM settings")).to_be_visible()
    # The token left the address bar (and history) at once, and lives in this tab's storage.
    assert "#" not in console.page.url and "token" not in console.page.url
    assert await console.page.evaluate("sessionStorage.getItem('console.token')") == token
    return console


async def api_configs(platform: Platform, user: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=10) as client:
        response = await client.get("/api/settings/llm", headers=platform.auth(user))
    assert response.status_code == 200, response.text
    return response.json()


async def save(panel: Locator) -> None:
    await panel.get_by_role("button", name="Save").click()
    await expect(panel.get_by_text(re.compile(r"^Saved \(version \d+\)\.$"))).to_be_visible()


async def test_three_backends_in_byok_show_only_key_hints_then_text_in_member_mode(
    platform: Platform, context: BrowserContext
) -> None:
    console = await sign_in(context, platform, "erin")
    await console.open_settings()

    for tab, key in (
        ("Text Generation", USER_OPENAI_KEY),
        ("Multimodal", USER_MULTIMODAL_KEY),
        ("Image Generation", USER_IMAGE_KEY),
    ):
        panel = await console.tab(tab)
        await panel.get_by_role("radio", name=re.compile("BYOK")).check()
        await panel.get_by_label("API key", exact=True).fill(key)
        await save(panel)
        # Write-only: the field is empty again and only the last characters come back.
        await expect(panel.get_by_label("API key", exact=True)).to_have_value("")
        await expect(panel.get_by_test_id("key-hint")).to_contain_text(f"…{key[-4:]}")
    await console.screenshot("settings-byok-three-tabs")

    stored = await api_configs(platform, "erin")
    for name, key in zip(("text", "multimodal", "image"), ALL_KEYS, strict=True):
        assert stored[name]["mode"] == "byok"
        assert stored[name]["api_key"]["is_set"] is True
        assert stored[name]["api_key"]["hint"].endswith(key[-4:])
    page_text = await console.page.content()
    storage = await console.page.evaluate("JSON.stringify({...sessionStorage, ...localStorage})")
    for key in ALL_KEYS:
        assert key not in page_text and key not in storage

    # Text back to member mode: model and temperature, no key field.
    panel = await console.tab("Text Generation")
    await panel.get_by_role("radio", name=re.compile("Member")).check()
    await expect(panel.get_by_label("API key", exact=True)).to_have_count(0)
    await expect(panel.get_by_role("slider", name=re.compile("Temperature"))).to_be_visible()
    await save(panel)
    assert (await api_configs(platform, "erin"))["text"]["mode"] == "member"
    await expect(console.page.locator(".mode-badge")).to_contain_text("Member")

    # The Image tab in member mode: controls disabled, and the reason said.
    panel = await console.tab("Image Generation")
    await panel.get_by_role("radio", name=re.compile("Member")).check()
    await expect(panel.get_by_test_id("member-unavailable")).to_contain_text("member mode")
    await expect(panel.get_by_label("Model", exact=True)).to_be_disabled()
    await expect(panel.get_by_role("button", name="Save")).to_be_disabled()
    await console.screenshot("settings-image-member-disabled")
    await console.audit("the settings modal")
    assert console.csp_violations() == []


async def test_chat_streams_and_updates_the_balance_and_refusals_are_messages(
    platform: Platform, context: BrowserContext
) -> None:
    await platform.grant("frank", 5_000_000)
    console = await sign_in(context, platform, "frank")
    page = console.page
    balance = page.get_by_test_id("balance")
    await expect(balance).to_have_text("5.00")
    await expect(page.get_by_role("group", name="Backend status")).to_contain_text(
        re.compile(r"Text Generation: connected \(\d+ ms\)")
    )

    await page.get_by_label("Message").fill("hello from the console")
    await page.get_by_label("Message").press("Enter")
    answer = page.locator(".message-assistant").last
    await expect(answer).to_contain_text("Echo: hello from the console")
    request = platform.openai.last_request
    assert request is not None and request.stream is True and request.model == "gpt-4o-mini"
    # The credits header of the call (then the balance route) moved the balance down.
    await expect(balance).not_to_have_text("5.00")
    assert float((await balance.inner_text()).replace(",", "")) < 5
    await console.screenshot("playground-chat")
    await console.audit("the playground")

    # The other backend types' playground panels wait for their services, and say so.
    await page.get_by_role("tab", name=re.compile("Multimodal")).click()
    await expect(page.get_by_test_id("coming-multimodal")).to_contain_text(
        "coming with multimodal-svc"
    )
    await page.get_by_role("tab", name=re.compile("Text Generation")).click()

    # No credits: a message the user can act on, not a broken page.
    broke = await sign_in(context, platform, "gina")
    await broke.page.get_by_label("Message").fill("hi")
    await broke.page.get_by_role("button", name="Send").click()
    await expect(broke.page.get_by_role("alert")).to_contain_text("Not enough credits")
    await broke.screenshot("playground-insufficient-credits")

    # The usage page: the call above, per backend type and model, with the credits spent.
    await page.get_by_role("link", name="Usage").click()
    assert page.url.endswith("/usage")
    table = page.locator(".usage-table")
    await expect(table).to_contain_text("gpt-4o-mini")
    await expect(page.get_by_role("img", name=re.compile("per model"))).to_be_visible()
    await console.screenshot("usage")
    await console.audit("the usage page")
    await page.reload()  # a client route served by the gateway
    await expect(page.get_by_role("heading", name="Usage")).to_be_visible()
    assert console.csp_violations() == []


async def test_other_tab_sees_saves_conflicts_are_shown_and_tabs_work_by_keyboard(
    platform: Platform, context: BrowserContext
) -> None:
    first = await sign_in(context, platform, "hank")
    second = await sign_in(context, platform, "hank")
    await second.open_settings()
    await first.open_settings()

    # A save in the first tab reaches the second without a reload.
    panel = await first.tab("Text Generation")
    await panel.get_by_label("Model", exact=True).select_option("gpt-4o")
    await save(panel)
    saved_version = (await api_configs(platform, "hank"))["text"]["version"]
    await expect(second.panel().get_by_label("Model", exact=True)).to_have_value("gpt-4o")
    await expect(second.page.get_by_label("Text Generation model")).to_have_value("gpt-4o")

    # The second tab edits; another device saves first; the save shows what changed.
    await second.panel().get_by_label("Model", exact=True).select_option("gpt-4.1")
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=10) as client:
        response = await client.put(
            "/api/settings/llm/text",
            json={"provider": "openai", "model": "gpt-4.1-mini", "mode": "member"},
            headers={**platform.auth("hank"), "if-match": f'"{saved_version}"'},
        )
    assert response.status_code == 200, response.text
    await second.panel().get_by_role("button", name="Save").click()
    conflict = second.panel().locator(".conflict")
    await expect(conflict).to_contain_text(
        f"Saved elsewhere first (now version {response.json()['version']})"
    )
    await expect(conflict.get_by_role("row", name=re.compile("Model"))).to_contain_text(
        "gpt-4.1-mini"
    )
    await expect(conflict.get_by_role("row", name=re.compile("Model"))).to_contain_text("gpt-4.1")
    assert (await api_configs(platform, "hank"))["text"]["model"] == "gpt-4.1-mini"
    await second.screenshot("settings-conflict")
    await conflict.get_by_role("button", name=re.compile("Keep mine")).click()
    await expect(second.panel().get_by_text(re.compile(r"^Saved \(version \d+\)"))).to_be_visible()
    assert (await api_configs(platform, "hank"))["text"]["model"] == "gpt-4.1"

    # Keyboard only: open the dialog, move across the tabs with arrows, into a panel, choose a
    # mode, close with Escape.
    page = first.page
    await page.keyboard.press("Escape")
    await expect(first.dialog()).to_have_count(0)
    opener = page.get_by_role("button", name="LLM settings")
    await opener.focus()
    await page.keyboard.press("Enter")
    focused = page.locator(":focus")
    await expect(focused).to_have_attribute("role", "tab")
    await expect(focused).to_contain_text("Text Generation")
    await page.keyboard.press("ArrowRight")
    await expect(focused).to_contain_text("Multimodal")
    await expect(focused).to_have_attribute("aria-selected", "true")
    await page.keyboard.press("ArrowRight")
    await expect(focused).to_contain_text("Image Generation")
    await page.keyboard.press("Home")
    await expect(focused).to_contain_text("Text Generation")
    await page.keyboard.press("End")
    await expect(focused).to_contain_text("Image Generation")
    await page.keyboard.press("ArrowLeft")
    await expect(focused).to_contain_text("Multimodal")
    await page.keyboard.press("Tab")  # the panel
    await expect(focused).to_have_attribute("role", "tabpanel")
    await page.keyboard.press("Tab")  # the mode radios
    await expect(focused).to_have_attribute("type", "radio")
    await page.keyboard.press("ArrowRight")  # member → BYOK
    await expect(first.panel().get_by_label("API key", exact=True)).to_be_visible()
    await first.screenshot("settings-keyboard")
    await page.keyboard.press("Escape")
    await expect(first.dialog()).to_have_count(0)
    await expect(opener).to_be_focused()
    assert first.csp_violations() == [] and second.csp_violations() == []
