"""The zh_Hans catalogue: complete, in step with the code, and actually used at run time.

zh-hans is the platform's default language (settings.LANGUAGE_CODE) and English msgids are what the code
writes, so a string missing from ``locale/zh_Hans/LC_MESSAGES/django.po`` shows up in English on a Chinese
screen. These tests fail when someone adds or changes a string without refreshing the catalogue; the fix is
the workflow in docs/translations.md. The catalogue is read with a small parser of our own (the stdlib has
none, and polib would be a dependency for one test module).
"""

from __future__ import annotations

import ast
import gettext as gettext_module
import io
import os
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test.signals import language_changed
from django.utils import translation

from bnpl import services as order_services
from bnpl.choices import OrderStatus
from bnpl.exceptions import InvalidTransition, NotAllowed, ValidationFailed
from bnpl.validators import validate_uscc
from consumers import services as consumer_services
from consumers.choices import ScoreBand
from merchants import services as merchant_services
from merchants.choices import ConfirmMode, MerchantStatus
from scoring.choices import DecisionOutcome
from tests.factories import ConsumerFactory, ListingFactory, UserFactory

LOCALE_DIR = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES"
PO_PATH = LOCALE_DIR / "django.po"
MO_PATH = LOCALE_DIR / "django.mo"
# What `manage.py makemessages ... --ignore=.venv --ignore=bench --ignore=tests` reads (docs/translations.md):
# top-level directories it skips, and the extensions of the "django" domain.
IGNORED_DIRS = frozenset({".venv", "bench", "tests", "locale", "__pycache__", "node_modules"})
SOURCE_SUFFIXES = (".py", ".html", ".txt")
# Translations that may legitimately contain no Chinese character (none yet).
NON_CHINESE_ALLOWED: frozenset[str] = frozenset()
REFRESH_HINT = "refresh the catalogue as described in docs/translations.md"


# --------------------------------------------------------------------------- a small .po parser


@dataclass
class Entry:
    msgid: str = ""
    msgctxt: str | None = None
    msgid_plural: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    obsolete: bool = False

    @property
    def key(self) -> tuple[str | None, str]:
        return (self.msgctxt, self.msgid)

    @property
    def label(self) -> str:
        return repr(self.msgid) if self.msgctxt is None else f"{self.msgctxt!r} | {self.msgid!r}"


_KEYWORD = re.compile(r"^(msgctxt|msgid_plural|msgid|msgstr)(?:\[(\d+)\])?\s+(\".*\")\s*$")


def parse_po(text: str) -> list[Entry]:
    """Entries of a .po file, header included (msgid ""). Enough of the format for makemessages' output."""
    entries: list[Entry] = []
    entry = Entry()
    current: tuple[str, int] | None = None
    started = False

    def finish() -> None:
        nonlocal entry, current, started
        if started:
            entries.append(entry)
        entry, current, started = Entry(), None, False

    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            finish()
            continue
        if line.startswith("#~"):
            entry.obsolete = True
            line = line[2:].strip()
            if not line or line.startswith("|"):
                continue
        elif line.startswith("#,"):
            if started and current is not None:
                finish()
            entry.flags.update(flag.strip() for flag in line[2:].split(",") if flag.strip())
            continue
        elif line.startswith("#"):
            if started and current is not None and current[0] == "msgstr":
                finish()
            continue
        match = _KEYWORD.match(line)
        if match:
            keyword, index, literal = match.groups()
            if keyword in ("msgctxt", "msgid") and current is not None and current[0] == "msgstr":
                finish()  # a new entry without a blank line in between
            started = True
            current = (keyword, int(index or 0))
            value = ast.literal_eval(literal)
        elif line.startswith('"') and current is not None:
            value = ast.literal_eval(line)
        else:
            raise ValueError(f"Unparsable .po line: {raw!r}")
        keyword, index = current
        if keyword == "msgctxt":
            entry.msgctxt = (entry.msgctxt or "") + value
        elif keyword == "msgid":
            entry.msgid += value
        elif keyword == "msgid_plural":
            entry.msgid_plural = (entry.msgid_plural or "") + value
        else:
            entry.msgstr[index] = entry.msgstr.get(index, "") + value
    finish()
    return entries


def catalogue() -> tuple[dict[str, str], list[Entry]]:
    """The committed catalogue: its header fields and its live (not obsolete) entries."""
    entries = parse_po(PO_PATH.read_text(encoding="utf-8"))
    headers = [e for e in entries if e.msgid == "" and e.msgctxt is None and not e.obsolete]
    assert len(headers) == 1, "the catalogue must have exactly one header entry"
    header = dict(line.split(":", 1) for line in headers[0].msgstr.get(0, "").splitlines() if ":" in line)
    live = [e for e in entries if not e.obsolete and e is not headers[0]]
    return {k.strip(): v.strip() for k, v in header.items()}, live


_PRINTF = re.compile(
    r"%(?:\((?P<name>[^)]*)\))?[#0 +\-]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?(?P<conversion>[diouxXeEfFgGcrsa%])"
)
_BRACE = re.compile(r"(?<!\{)\{([^{}]*)\}(?!\})")


def placeholders(text: str, flags: set[str]) -> tuple[Counter, tuple[str, ...], Counter]:
    """(named %-placeholders, positional %-placeholders in order, {brace} fields) that formatting needs."""
    named: Counter = Counter()
    positional: list[str] = []
    if "python-format" in flags:
        for match in _PRINTF.finditer(text):
            if match["conversion"] == "%":
                continue
            if match["name"] is not None:
                named[(match["name"], match["conversion"])] += 1
            else:
                positional.append(match["conversion"])
    braces = Counter(_BRACE.findall(text)) if "python-brace-format" in flags else Counter()
    return named, tuple(positional), braces


# --------------------------------------------------------------------------- (a) the catalogue is complete


def test_catalogue_header_declares_zh_hans_utf8_and_a_single_plural_form():
    header, _entries = catalogue()
    assert header["Language"] == "zh_Hans"
    assert header["Content-Type"] == "text/plain; charset=UTF-8"
    assert header["Plural-Forms"] == "nplurals=1; plural=0;"


def test_catalogue_has_no_obsolete_entries():
    entries = parse_po(PO_PATH.read_text(encoding="utf-8"))
    assert [e.label for e in entries if e.obsolete] == [], f"obsolete entries: {REFRESH_HINT} (--no-obsolete)"


def test_every_entry_is_translated_and_none_is_fuzzy():
    _header, entries = catalogue()
    assert len(entries) > 300  # the parser read the whole file, not a fragment
    fuzzy = [e.label for e in entries if "fuzzy" in e.flags]
    empty = [e.label for e in entries if not e.msgstr or any(not text for text in e.msgstr.values())]
    assert (fuzzy, empty) == ([], []), f"fuzzy or untranslated entries: {REFRESH_HINT}"


def test_plural_entries_have_exactly_the_one_form_zh_uses():
    _header, entries = catalogue()
    plural = [e for e in entries if e.msgid_plural is not None]
    assert plural, "the code uses ngettext/blocktranslate count, so some entries are plural"
    assert [e.label for e in plural if sorted(e.msgstr) != [0]] == []
    assert [e.label for e in entries if e.msgid_plural is None and sorted(e.msgstr) != [0]] == []


def test_translations_keep_the_placeholders_of_their_msgid():
    _header, entries = catalogue()
    wrong = []
    for entry in entries:
        # With a single plural form, msgstr[0] is used for every n, so it must work with msgid_plural's
        # placeholders (e.g. blocktranslate's %(counter)s, which the singular msgid may leave out).
        source = entry.msgid_plural if entry.msgid_plural is not None else entry.msgid
        expected = placeholders(source, entry.flags)
        for index, text in entry.msgstr.items():
            if placeholders(text, entry.flags) != expected:
                wrong.append(f"{entry.label} [{index}]: {text!r}")
    assert wrong == []


def test_every_translation_is_chinese():
    _header, entries = catalogue()
    cjk = re.compile(r"[\u4e00-\u9fff]")
    untranslated = [
        e.label
        for e in entries
        if e.msgid not in NON_CHINESE_ALLOWED and not all(cjk.search(text) for text in e.msgstr.values())
    ]
    assert untranslated == []


def test_msgfmt_accepts_the_catalogue():
    # The same check compilemessages makes (format strings, header, plural forms), without writing a .mo.
    result = subprocess.run(
        [_msgfmt(), "--check", "--output-file", os.devnull, str(PO_PATH)], capture_output=True, text=True
    )
    assert (result.returncode, result.stderr) == (0, "")


# --------------------------------------------------------------------------- (b) in step with the code


def _extract_msgids(tmp_path: Path, settings_fixture, monkeypatch) -> set[tuple[str | None, str]]:
    """The msgids makemessages finds in the code today, extracted into a scratch copy.

    makemessages always writes the catalogue it extracts into (and templatises templates next to them), so
    it runs on a copy of the sources with an empty locale dir and no LOCALE_PATHS: the committed catalogue
    and the working tree are never touched, which matters while other people run the suite in the same tree.
    """
    source = tmp_path / "src"

    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = set()
        for name in names:
            path = Path(directory, name)
            if path.is_dir():
                if name in IGNORED_DIRS or name.startswith("."):
                    skipped.add(name)
            elif not name.endswith(SOURCE_SUFFIXES):
                skipped.add(name)
        return skipped

    shutil.copytree(settings.BASE_DIR, source, ignore=ignore)
    (source / "locale").mkdir()
    settings_fixture.LOCALE_PATHS = []
    monkeypatch.chdir(source)
    call_command("makemessages", locale=["zh_Hans"], no_obsolete=True, verbosity=0, stdout=io.StringIO())
    extracted = parse_po((source / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po").read_text(encoding="utf-8"))
    return {e.key for e in extracted if e.msgid and not e.obsolete}


@pytest.fixture
def code_msgids(tmp_path, settings, monkeypatch):
    return _extract_msgids(tmp_path, settings, monkeypatch)


def test_catalogue_has_every_msgid_the_code_uses(code_msgids):
    _header, entries = catalogue()
    assert len(code_msgids) > 300
    missing = sorted(code_msgids - {e.key for e in entries}, key=str)
    assert missing == [], f"{len(missing)} msgid(s) not in the catalogue ({REFRESH_HINT}): {missing[:20]}"


def test_catalogue_has_no_msgid_the_code_no_longer_uses(code_msgids):
    _header, entries = catalogue()
    stale = sorted({e.key for e in entries} - code_msgids, key=str)
    assert stale == [], f"{len(stale)} catalogue entries no longer used ({REFRESH_HINT}): {stale[:20]}"


# --------------------------------------------------------------------------- (c) Chinese at run time


def _msgfmt() -> str:
    path = shutil.which("msgfmt")
    assert path, "GNU gettext's msgfmt is needed (apt-get install gettext), as for `make test`"
    return path


def _compile_if_stale() -> bool:
    """Compile the .po into place when the .mo is missing or older; True when it did.

    `make test` compiles before pytest runs, so usually there is nothing to do. The .mo is written to a
    temporary file and renamed, so another process reading it meanwhile never sees half a file.
    """
    if MO_PATH.exists() and MO_PATH.stat().st_mtime >= PO_PATH.stat().st_mtime:
        return False
    fd, scratch = tempfile.mkstemp(dir=LOCALE_DIR, prefix=".django-", suffix=".mo")
    os.close(fd)
    try:
        subprocess.run(
            [_msgfmt(), "--check-format", "--output-file", scratch, str(PO_PATH)],
            check=True,
            capture_output=True,
        )
        os.chmod(scratch, 0o644)  # mkstemp makes it private; the server may run as another user
        os.replace(scratch, MO_PATH)
    finally:
        if os.path.exists(scratch):
            os.unlink(scratch)
    return True


@pytest.fixture(scope="module")
def compiled_catalogue():
    if _compile_if_stale():
        # A stale .mo may already be loaded: drop gettext's cache of it and Django's translation objects
        # (the reset Django itself performs when LOCALE_PATHS changes).
        for key in [k for k in gettext_module._translations if Path(k[1]) == MO_PATH]:  # type: ignore[attr-defined]
            del gettext_module._translations[key]  # type: ignore[attr-defined]
        language_changed(setting="LOCALE_PATHS")


@pytest.fixture
def zh(compiled_catalogue):
    """zh-hans active (the suite-wide autouse fixture activates English)."""
    with translation.override("zh-hans"):
        yield


def test_order_status_labels_render_in_chinese(zh):
    assert {status.value: str(status.label) for status in OrderStatus} == {
        "created": "已创建",
        "pending_confirmation": "待确认",
        "declined": "未通过评估",
        "active": "服务中",
        "expired": "已失效",
        "cancelled": "已取消",
        "completed": "待扣款",
        "collecting": "扣款中",
        "overdue": "已逾期",
        "paid": "已扣款",
        "partially_refunded": "部分退款",
        "refunded": "已退款",
        "written_off": "已核销",
    }


def test_merchant_status_labels_render_in_chinese(zh):
    assert {status.value: str(status.label) for status in MerchantStatus} == {
        "draft": "草稿",
        "submitted": "待审核",
        "approved": "已通过",
        "rejected": "已驳回",
        "suspended": "已暂停",
    }


def test_score_bands_and_the_declined_outcome_render_in_chinese(zh):
    assert {band.value: str(band.label) for band in ScoreBand} == {
        "poor": "较差",
        "fair": "中等",
        "good": "良好",
        "very_good": "优秀",
        "excellent": "极好",
    }
    assert str(DecisionOutcome.DECLINED.label) == "暂时无法开通"


def test_plural_message_uses_the_single_chinese_form(zh):
    for n in (1, 3):
        text = translation.ngettext("%(n)d order expired.", "%(n)d orders expired.", n) % {"n": n}
        assert text == f"{n} 笔订单已失效。"


def test_english_is_still_served_when_english_is_active(compiled_catalogue):
    with translation.override("en"):
        assert str(OrderStatus.COMPLETED.label) == "Awaiting charge"


def test_validator_message_renders_in_chinese(zh):
    with pytest.raises(ValidationError) as refused:
        validate_uscc("123")
    assert refused.value.messages == ["请输入有效的统一社会信用代码（18 位，校验码须正确）。"]


@pytest.mark.django_db
def test_merchant_refusal_names_the_state_in_chinese(zh, merchant, staff_user):
    with pytest.raises(InvalidTransition) as refused:
        merchant_services.merchant_approve(actor=staff_user, merchant=merchant)
    assert refused.value.message == f"商家“{merchant}”无法审核通过：当前状态为已通过（approved）。"
    merchant.refresh_from_db()
    assert merchant.status == MerchantStatus.APPROVED


@pytest.mark.django_db
def test_consumer_service_errors_render_in_chinese(zh, consumer, staff_user):
    with pytest.raises(ValidationFailed) as unchanged:
        consumer_services.credit_limit_set(
            actor=staff_user, consumer=consumer, amount="1000.00", reason_code="staff", reason="复核"
        )
    with pytest.raises(NotAllowed) as not_paused:
        consumer_services.credit_profile_unpause(actor=staff_user, consumer=consumer, reason="复核")
    assert (unchanged.value.message, unchanged.value.fields) == (
        "新额度与当前额度相同。",
        {"amount": "新额度与当前额度相同。"},
    )
    assert not_paused.value.message == "该消费者的先享服务未被暂停。"
    consumer.credit_profile.refresh_from_db()
    assert (consumer.credit_profile.credit_limit_amount, consumer.credit_profile.is_paused) == (
        Decimal("1000.00"),
        False,
    )


@pytest.mark.django_db
def test_declined_sign_up_says_cannot_open_for_now_with_chinese_reasons(zh, merchant):
    listing = ListingFactory(merchant=merchant, confirm_mode=ConfirmMode.AGREEMENT)
    consumer = ConsumerFactory(profile__score=500)
    with pytest.raises(NotAllowed) as refused:
        order_services.agreement_sign(actor=consumer.user, consumer=consumer, listing=listing)
    assert (refused.value.code, refused.value.message) == ("declined", "暂时无法开通")
    assert refused.value.reasons == [{"code": "score_below_minimum", "message": "你的信用分未达到该服务的要求"}]


@pytest.mark.django_db
def test_order_refusal_renders_in_chinese(zh, merchant):
    listing = ListingFactory(merchant=merchant)  # confirmed order by order
    with pytest.raises(ValidationFailed) as refused:
        order_services.agreement_sign(actor=UserFactory(), consumer=ConsumerFactory(), listing=listing)
    assert refused.value.message == "该服务需逐笔确认，不签署授权协议。"
