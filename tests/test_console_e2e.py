"""The web console in a real Chromium, against the real platform (tests/harness.py: every service
and the provider stand-ins in this process; the gateway serves the console's build).

Playwright drives the OS's Chromium (/usr/bin/chromium; `make test` installs Debian's package when
it is missing). These tests fail, never skip, without it. Screenshots of each screen go to
test-artifacts/console/; axe-core (the console's npm package) audits each screen in the page.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import USER_OPENAI_KEY, Platform, running_platform
from PIL import Image
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

    # The multimodal route landed: its status dot is a real connection check (issue 12 replaced
    # the "coming with multimodal-svc" placeholder this test used to assert).
    await expect(page.get_by_role("group", name="Backend status")).to_contain_text(
        re.compile(r"Multimodal: connected \(\d+ ms\)")
    )

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


def image_file(path: Path, colour: str, size: tuple[int, int], image_format: str) -> Path:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=image_format)
    path.write_bytes(buffer.getvalue())
    return path


async def test_an_image_question_streams_the_answer_and_a_refused_image_is_said_plainly(
    platform: Platform, context: BrowserContext, tmp_path: Path
) -> None:
    await platform.grant("iris", 5_000_000)
    console = await sign_in(context, platform, "iris")
    page = console.page
    await expect(page.get_by_role("group", name="Backend status")).to_contain_text(
        re.compile(r"Multimodal: connected \(\d+ ms\)")
    )
    await page.get_by_role("tab", name=re.compile("Multimodal")).click()
    # The top bar follows the playground's backend type: the multimodal models, from /models.
    selector = page.get_by_label("Multimodal model")
    await expect(selector).to_be_enabled()
    assert await selector.locator("option").count() >= 1

    picture = image_file(tmp_path / "red.png", "red", (40, 30), "PNG")
    await page.locator("#image-file").set_input_files(str(picture))
    await expect(page.get_by_role("img", name="The image you chose: red.png")).to_be_visible()
    await page.get_by_role("button", name="Ask").click()
    # The stand-in decoded the bytes it received and names format, size and dominant colour.
    await expect(page.get_by_test_id("image-answer")).to_contain_text("image:png:40x30:red")
    await expect(page.get_by_test_id("balance")).not_to_have_text("5.00")
    await console.screenshot("playground-image-question")
    await console.audit("the image question")

    # A format the intake refuses: a message that says what to do, not a broken panel.
    bitmap = image_file(tmp_path / "scan.bmp", "blue", (8, 8), "BMP")
    await page.locator("#image-file").set_input_files(str(bitmap))
    await page.get_by_role("button", name="Ask").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("The image was refused")
    await expect(alert).to_contain_text("PNG, JPEG, WEBP or GIF")
    await console.screenshot("playground-image-question-refused")
    await console.audit("the image question's refusal")
    assert console.csp_violations() == []


def interrupts(stand_in: Any) -> int:
    return sum(1 for r in stand_in.requests if r.path.endswith("/interrupt"))


async def progress_now(bar: Locator) -> int:
    return int(await bar.get_attribute("aria-valuenow") or "0")


async def test_image_generation_in_byok_shows_progress_previews_a_gallery_and_cancel_stops_the_job(
    platform: Platform, context: BrowserContext
) -> None:
    comfy = platform.comfyui
    assert comfy is not None
    # A step takes a while on the stand-in's clock, so progress is there to see.
    comfy.set_behaviour(step_delay_s=0.25)
    console = await sign_in(context, platform, "jack")
    page = console.page
    await page.get_by_role("tab", name=re.compile("Image Generation")).click()

    # Member mode is off for images on this platform: the 403 says what to do, and the button
    # opens the Image tab of the settings.
    await page.get_by_label("Prompt").fill("a lighthouse at dusk")
    await page.get_by_role("button", name="Generate").click()
    await expect(page.get_by_role("alert")).to_contain_text(
        "Image generation needs your own API key"
    )
    await console.screenshot("playground-image-needs-own-key")
    await page.get_by_role("button", name="Open the Image tab of LLM settings").click()
    await expect(console.dialog()).to_be_visible()
    image_tab = console.dialog().get_by_role("tab", name=re.compile("Image Generation"))
    await expect(image_tab).to_have_attribute("aria-selected", "true")
    await expect(image_tab).to_contain_text("BYOK only")

    # BYOK on the user's own ComfyUI (the stand-in), then a connection check with its latency.
    panel = console.panel()
    await panel.get_by_role("radio", name=re.compile("BYOK")).check()
    await panel.get_by_label("Provider", exact=True).select_option(label="ComfyUI (local)")
    await panel.get_by_label("Base URL", exact=True).fill(comfy.base_url)
    await save(panel)
    await panel.get_by_role("button", name="Check connection").click()
    await expect(panel.get_by_test_id("connection")).to_contain_text(
        re.compile(r"^connected \(\d+ ms\)")
    )
    await expect(page.get_by_role("group", name="Backend status")).to_contain_text(
        re.compile(r"Image Generation: connected \(\d+ ms\)")
    )
    await console.screenshot("settings-image-byok")
    await console.audit("the Image tab of the settings")
    await page.keyboard.press("Escape")
    await expect(console.dialog()).to_have_count(0)

    # Generate: the bar moves (two observations, each waited for), a preview arrives, then the
    # image joins the gallery.
    await page.get_by_role("button", name="Generate").click()
    bar = page.get_by_role("progressbar", name="Image generation progress")
    await expect(bar).to_have_attribute("aria-valuenow", re.compile(r"^[1-9]\d*$"))
    first = await progress_now(bar)
    await page.wait_for_function(
        "(seen) => Number(document.querySelector('[role=progressbar]')"
        "?.getAttribute('aria-valuenow')) > seen",
        arg=first,
    )
    assert await progress_now(bar) > first
    await expect(bar).to_have_attribute("aria-valuetext", re.compile(r"step \d+ of \d+"))
    await expect(page.get_by_test_id("preview").first).to_be_visible()
    await console.screenshot("playground-image-progress")
    # expect() waits 5 s by default: the whole job takes about 20 steps x 0.25 s.
    await expect(page.get_by_role("img", name="Generated: a lighthouse at dusk")).to_be_visible(
        timeout=30_000
    )
    await expect(page.get_by_test_id("generation-status")).to_have_text("Done.")
    await expect(page.get_by_test_id("preview")).to_have_count(0)
    await console.screenshot("playground-image-gallery")
    await console.audit("image generation")

    # Cancel: the request is aborted, the gateway cancels the job, ComfyUI is interrupted.
    before = interrupts(comfy)
    comfy.set_behaviour(step_delay_s=0.5)
    await page.get_by_label("Prompt").fill("a slow one")
    await page.get_by_role("button", name="Generate").click()
    await expect(bar).to_have_attribute("aria-valuenow", re.compile(r"^[1-9]\d*$"))
    await page.get_by_role("button", name="Cancel").click()
    await expect(page.get_by_test_id("generation-status")).to_have_text(
        "Cancelled.", timeout=10_000
    )
    await comfy.wait_for(lambda: interrupts(comfy) > before, 10)
    await expect(page.get_by_role("button", name="Generate")).to_be_enabled()
    # The gallery keeps the finished image and gets no image from the cancelled job.
    await expect(page.get_by_test_id("gallery-image")).to_have_count(1)
    assert console.csp_violations() == []
