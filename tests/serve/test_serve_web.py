"""The web page in a real headless browser (Debian's chromium, driven by Playwright).

The page streams from the same API the client tests use, so with greedy decoding what it shows
must equal what the API returns for the same request. Skipped only when chromium is absent.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import openai
import pytest

from dscoder.serve import BackgroundServer, Scheduler
from serve_support import CONTEXT, MODEL_NAME

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server: BackgroundServer):
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server.url + "/")
    page.wait_for_function("document.getElementById('model').textContent.includes('context')")
    yield page
    page.close()
    assert errors == []  # no uncaught script errors


def set_sampling(page, max_tokens: int) -> None:
    page.fill("#max-tokens", str(max_tokens))
    page.fill("#temperature", "0")


def wait_finished(page) -> str:
    page.wait_for_function("['done', 'error', 'stopped'].includes(document.getElementById('status').dataset.state)")
    assert page.get_attribute("#status", "data-state") == "done", page.text_content("#error")
    return page.get_attribute("#status", "data-finish-reason")


def test_the_page_shows_the_model(page):
    assert page.text_content("#model") == f"{MODEL_NAME} · context {CONTEXT} tokens"


def test_completion_streams_the_apis_text(page, client: openai.OpenAI):
    prompt = "def add(a, b):\n"
    want = client.completions.create(model=MODEL_NAME, prompt=prompt, max_tokens=24, temperature=0).choices[0]
    # Count the updates of the output while it streams: more than one means it streamed.
    page.evaluate("""() => {
        window.updates = 0;
        new MutationObserver(() => window.updates++).observe(
            document.getElementById('complete-generated'), {childList: true, characterData: true, subtree: true});
    }""")
    set_sampling(page, 24)
    page.fill("#prompt", prompt)
    page.click("#run-complete")
    assert wait_finished(page) == want.finish_reason
    assert page.text_content("#complete-generated") == want.text
    assert page.text_content("#complete-context") == prompt
    assert page.evaluate("window.updates") > 1
    assert "finished:" in page.text_content("#status")


def test_infilling_sends_prefix_and_suffix(page, client: openai.OpenAI):
    prefix, suffix = "def is_even(n):\n", "\nprint(is_even(4))\n"
    want = client.completions.create(model=MODEL_NAME, prompt=prefix, suffix=suffix, max_tokens=16,
                                     temperature=0).choices[0]
    page.click("#tab-infill")
    assert page.is_hidden("#panel-complete") and page.is_visible("#panel-infill")
    set_sampling(page, 16)
    page.fill("#prefix", prefix)
    page.fill("#suffix", suffix)
    page.click("#run-infill")
    wait_finished(page)
    assert page.text_content("#infill-generated") == want.text
    assert page.text_content("#infill-suffix") == suffix


def test_chat_keeps_the_conversation(page, client: openai.OpenAI):
    page.click("#tab-chat")
    set_sampling(page, 12)
    # A short system text: the default one takes most of the test model's small context.
    system, first = "Be brief.", "Reverse a string."
    page.fill("#system", system)
    page.fill("#message", first)
    page.click("#run-chat")
    wait_finished(page)
    messages = [{"role": "system", "content": system}, {"role": "user", "content": first}]
    answer = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=12,
                                            temperature=0).choices[0].message.content
    assert page.text_content("#transcript li.assistant") == answer

    second = "Now in C."
    page.fill("#message", second)
    page.press("#message", "Control+Enter")
    page.wait_for_function("document.querySelectorAll('#transcript li').length === 4")
    wait_finished(page)
    messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": second}]
    reply = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=12,
                                           temperature=0).choices[0].message.content
    assert page.locator("#transcript li.assistant").nth(1).text_content() == reply
    assert page.locator("#transcript li.user").all_text_contents() == [first, second]


def test_an_api_error_is_shown_and_the_message_is_kept(page):
    page.click("#tab-chat")
    page.fill("#max-tokens", str(CONTEXT * 2))
    page.fill("#message", "hello")
    page.click("#run-chat")
    page.wait_for_selector("#error:not([hidden])")
    assert "maximum context length" in page.text_content("#error")
    assert page.input_value("#message") == "hello"
    assert page.locator("#transcript li").count() == 0


def test_stop_ends_the_generation_on_the_server(page, scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch):
    # The test model writes 200 tokens in about 30 ms once the first has arrived, less than a
    # browser takes to react to it; 5 ms a step gives the page a second to press Stop.
    step = scheduler.engine.step

    def slow_step():
        time.sleep(0.005)
        return step()

    monkeypatch.setattr(scheduler.engine, "step", slow_step)
    before = scheduler.stats
    page.fill("#max-tokens", "200")
    page.fill("#temperature", "0")
    page.fill("#prompt", "x")
    # Random weights may choose EOS at once; ignore_eos (an API extension the page does not
    # send) keeps the generation going until Stop is pressed.
    page.evaluate("""() => {
        const original = window.fetch;
        window.fetch = (url, options) => {
            if (options && options.body) {
                options = {...options, body: JSON.stringify({...JSON.parse(options.body), ignore_eos: true})};
            }
            return original(url, options);
        };
    }""")
    # The test model writes 200 tokens in well under a second, faster than a round trip
    # through Playwright; so Stop is pressed from inside the page, as soon as text appears.
    page.evaluate("""() => {
        const output = document.getElementById('complete-generated');
        const observer = new MutationObserver(() => {
            if (!output.textContent) return;
            observer.disconnect();
            document.querySelector('#panel-complete button.stop').click();
        });
        observer.observe(output, {childList: true, characterData: true, subtree: true});
    }""")
    page.click("#run-complete")
    page.wait_for_selector("#status[data-state='stopped']")
    assert len(page.text_content("#complete-generated")) > 0
    deadline = time.monotonic() + 10
    while scheduler.load() != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.02)
    after = scheduler.stats
    assert after.cancelled - before.cancelled == 1
    assert after.tokens - before.tokens < 200
