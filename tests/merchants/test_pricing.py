"""Tests for merchants.pricing: parsing, rating into bill lines, totals and descriptions.

Pure Python, no database: the rating must be right before anything is stored or charged, and
every amount is asserted to the fen so a rounding change cannot slip through.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bnpl.money import ceil_units
from merchants.pricing import (
    BillLineDraft,
    ExpressRule,
    FixedRule,
    PerUnitRule,
    PricingRuleError,
    RuleKind,
    Tier,
    TieredRule,
    Unit,
    UsageItem,
    bill_total,
    describe,
    parse_rule,
    rate,
)

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)

TIERS_JSON = {
    "kind": "tiered",
    "unit": "kwh",
    "tiers": [
        {"up_to": "10", "unit_price": "1.20"},
        {"up_to": "50", "unit_price": "1.00"},
        {"up_to": None, "unit_price": "0.80"},
    ],
    "free_units": "0",
}

EXPRESS_JSON = {
    "kind": "express",
    "first_weight_kg": "1",
    "first_weight_fee": "12.00",
    "additional_per_kg": "2.00",
    "packaging_fee": "1.50",
    "insurance_rate": "0.005",
    "insurance_min_fee": "1.00",
}


def use(quantity: str, *, hours: float = 0, **properties: Any) -> UsageItem:
    return UsageItem(D(quantity), T0 + timedelta(hours=hours), properties)


def per_unit(**overrides: Any) -> PerUnitRule:
    data: dict[str, Any] = {"kind": "per_unit", "unit": "hour", "unit_price": "1.00"}
    data.update(overrides)
    rule = parse_rule(data)
    assert isinstance(rule, PerUnitRule)
    return rule


def line(name: str, quantity: str, unit: str, unit_price: str, amount: str, discount: bool = False):
    return BillLineDraft(name, D(quantity), unit, D(unit_price), D(amount), discount)


def errors_of(data: Any) -> dict[str, str]:
    with pytest.raises(PricingRuleError) as excinfo:
        parse_rule(data)
    return excinfo.value.errors


# --------------------------------------------------------------------------- fixed


class TestFixed:
    def test_one_line_at_the_locked_price(self):
        rule = parse_rule({"kind": "fixed", "price": "99.00"})
        assert rule == FixedRule(price=D("99.00"), name="商品金额")
        assert rule.kind is RuleKind.FIXED
        assert rate(rule, [], started_at=T0) == [line("商品金额", "1", "item", "99.00", "99.00")]

    def test_usage_is_ignored_and_name_is_kept(self):
        rule = parse_rule({"kind": "fixed", "price": "5", "name": "直播间商品"})
        lines = rate(rule, [use("3"), use("7")], started_at=T0)
        assert lines == [line("直播间商品", "1", "item", "5.00", "5.00")]
        assert bill_total(lines) == D("5.00")

    def test_price_must_be_positive(self):
        assert "price" in errors_of({"kind": "fixed", "price": "0.00"})

    def test_name_must_be_a_non_empty_string(self):
        assert "name" in errors_of({"kind": "fixed", "price": "1.00", "name": "  "})
        assert "name" in errors_of({"kind": "fixed", "price": "1.00", "name": 3})


# --------------------------------------------------------------------------- per unit


class TestPerUnit:
    def test_started_hour_is_billed_whole(self):
        """1 h 38 min reported as 1.6333 hours at ¥1/h with round_up → 2 hours, ¥2.00."""
        rule = per_unit(round_up=True)
        lines = rate(rule, [use("1.6333")], started_at=T0)
        assert lines == [line("使用时长", "2", "hour", "1.00", "2.00")]
        assert bill_total(lines) == D("2.00")

    def test_without_round_up_the_exact_fraction_is_billed(self):
        lines = rate(per_unit(), [use("1.6333")], started_at=T0)
        assert lines == [line("使用时长", "1.6333", "hour", "1.00", "1.63")]

    def test_30_hours_with_a_daily_cap(self):
        """24 h window ¥24 capped at ¥10, then a 6 h window ¥6: ¥16.00."""
        rule = per_unit(cap_per_24h="10.00")
        lines = rate(rule, [use("30")], started_at=T0)
        assert lines == [
            line("使用时长", "30", "hour", "1.00", "30.00"),
            line("每24小时封顶减免", "1", "item", "14.00", "14.00", discount=True),
        ]
        assert bill_total(lines) == D("16.00")

    def test_time_windows_split_the_summed_quantity(self):
        """Usage reported in pieces is summed before it is cut into 24 h windows."""
        rule = per_unit(cap_per_24h="10.00")
        lines = rate(rule, [use("20"), use("10", hours=100)], started_at=T0)
        assert bill_total(lines) == D("16.00")

    def test_exactly_one_full_window_has_no_empty_second_window(self):
        rule = per_unit(cap_per_24h="10.00")
        windows = rule.windows([use("48")], started_at=T0)
        assert [(w.first_index, w.count, w.quantity, w.charged) for w in windows] == [(0, 2, D("24"), D("10.00"))]
        assert bill_total(rate(rule, [use("48")], started_at=T0)) == D("20.00")

    def test_minutes_use_1440_minute_windows_and_sub_fen_prices(self):
        rule = per_unit(unit="minute", unit_price="0.0167", cap_per_24h="20.00")
        lines = rate(rule, [use("3000")], started_at=T0)
        # 1440 × 0.0167 = 24.048 → 24.05 (twice, both capped at 20), 120 × 0.0167 = 2.004 → 2.00
        assert lines == [
            line("使用时长", "3000", "minute", "0.0167", "50.10"),
            line("每24小时封顶减免", "1", "item", "8.10", "8.10", discount=True),
        ]
        assert bill_total(lines) == D("42.00")

    def test_non_time_units_are_grouped_by_when_they_happened(self):
        rule = per_unit(unit="kwh", unit_price="1.00", cap_per_24h="20.00")
        usage = [
            use("3", hours=-1),  # before the start: window 0
            use("10", hours=1),
            use("15", hours=23),
            use("5", hours=25),
        ]
        lines = rate(rule, usage, started_at=T0)
        assert lines == [
            line("电量", "33", "kwh", "1.00", "33.00"),
            line("每24小时封顶减免", "1", "item", "8.00", "8.00", discount=True),
        ]
        assert bill_total(lines) == D("25.00")
        windows = rule.windows(usage, started_at=T0)
        assert [(w.first_index, w.quantity, w.charged) for w in windows] == [
            (0, D("28"), D("20.00")),
            (1, D("5"), D("5.00")),
        ]

    def test_an_event_exactly_24h_after_start_opens_the_next_window(self):
        rule = per_unit(unit="kwh", cap_per_24h="10.00")
        lines = rate(rule, [use("10", hours=0), use("10", hours=24)], started_at=T0)
        assert bill_total(lines) == D("20.00")
        assert len(lines) == 1  # neither window exceeds the cap
        lines = rate(rule, [use("10", hours=0), use("10", hours=23.99)], started_at=T0)
        assert bill_total(lines) == D("10.00")

    def test_visits_capped_per_day_with_gaps(self):
        rule = per_unit(unit="visit", unit_price="15.00", cap_per_24h="20.00")
        usage = [use("1", hours=2), use("1", hours=5), use("1", hours=75)]
        lines = rate(rule, usage, started_at=T0)
        assert lines == [
            line("次数", "3", "visit", "15.00", "45.00"),
            line("每24小时封顶减免", "1", "item", "10.00", "10.00", discount=True),
        ]
        assert bill_total(lines) == D("35.00")
        assert [w.first_index for w in rule.windows(usage, started_at=T0)] == [0, 3]

    def test_free_units_span_time_windows(self):
        """26 free hours cover the whole first day and 2 hours of the second."""
        rule = per_unit(free_units="26", cap_per_24h="10.00")
        lines = rate(rule, [use("30")], started_at=T0)
        assert lines == [line("使用时长", "4", "hour", "1.00", "4.00")]
        windows = rule.windows([use("30")], started_at=T0)
        assert [(w.quantity, w.billable, w.charged) for w in windows] == [
            (D("24"), D("0"), D("0.00")),
            (D("6"), D("4"), D("4.00")),
        ]

    def test_free_units_cover_several_whole_windows(self):
        rule = per_unit(free_units="50", cap_per_24h="10.00")
        windows = rule.windows([use("100")], started_at=T0)
        assert [(w.first_index, w.count, w.billable) for w in windows] == [
            (0, 2, D("0")),
            (2, 1, D("22")),
            (3, 1, D("24")),
            (4, 1, D("4")),
        ]
        assert bill_total(rate(rule, [use("100")], started_at=T0)) == D("24.00")  # 0 + 0 + 10 + 10 + 4

    def test_free_units_span_event_windows(self):
        rule = per_unit(unit="kwh", free_units="12", cap_per_24h="20.00")
        lines = rate(rule, [use("10", hours=1), use("5", hours=30)], started_at=T0)
        assert lines == [line("电量", "3", "kwh", "1.00", "3.00")]

    def test_free_units_then_round_up(self):
        rule = per_unit(free_units="1", round_up=True)
        assert rate(rule, [use("2.5")], started_at=T0) == [line("使用时长", "2", "hour", "1.00", "2.00")]

    def test_round_up_applies_per_event_window(self):
        rule = per_unit(unit="kwh", round_up=True, cap_per_24h="100.00")
        lines = rate(rule, [use("0.5", hours=1), use("0.5", hours=30)], started_at=T0)
        assert lines == [line("电量", "2", "kwh", "1.00", "2.00")]

    def test_usage_entirely_free_still_shows_the_usage_line(self):
        rule = per_unit(free_units="2")
        lines = rate(rule, [use("1.5")], started_at=T0)
        assert lines == [line("使用时长", "0", "hour", "1.00", "0.00")]
        assert bill_total(lines) == D("0.00")

    def test_minimum_charge_is_topped_up(self):
        rule = per_unit(minimum_amount="2.00")
        lines = rate(rule, [use("0.5")], started_at=T0)
        assert lines == [
            line("使用时长", "0.5", "hour", "1.00", "0.50"),
            line("最低消费补足", "1", "item", "1.50", "1.50"),
        ]
        assert bill_total(lines) == D("2.00")

    def test_minimum_is_compared_with_the_capped_total(self):
        rule = per_unit(cap_per_24h="10.00", minimum_amount="20.00")
        lines = rate(rule, [use("30")], started_at=T0)
        assert lines[-1] == line("最低消费补足", "1", "item", "4.00", "4.00")
        assert bill_total(lines) == D("20.00")

    def test_minimum_applies_when_all_usage_is_free(self):
        rule = per_unit(free_units="5", minimum_amount="3.00")
        lines = rate(rule, [use("1")], started_at=T0)
        assert bill_total(lines) == D("3.00")

    def test_no_top_up_when_the_minimum_is_reached(self):
        rule = per_unit(minimum_amount="2.00")
        assert rate(rule, [use("2")], started_at=T0) == [line("使用时长", "2", "hour", "1.00", "2.00")]

    @pytest.mark.parametrize("usage", [[], [use("0")], [use("0"), use("0", hours=30)]])
    def test_no_usage_no_lines_not_even_the_minimum(self, usage):
        rule = per_unit(minimum_amount="5.00", cap_per_24h="10.00")
        assert rate(rule, usage, started_at=T0) == []
        assert bill_total(rate(rule, usage, started_at=T0)) == D("0.00")

    def test_rounding_is_half_up_to_the_fen(self):
        assert rate(per_unit(unit_price="0.0165"), [use("3")], started_at=T0)[0].amount == D("0.05")
        assert rate(per_unit(), [use("1.005")], started_at=T0)[0].amount == D("1.01")
        assert rate(per_unit(), [use("0.125")], started_at=T0)[0].amount == D("0.13")
        assert rate(per_unit(), [use("1.0049")], started_at=T0)[0].amount == D("1.00")

    def test_each_window_is_rounded_before_summing(self):
        """Per-window amounts are what the cap is compared with, so each is rounded on its own."""
        rule = per_unit(unit="kwh", cap_per_24h="10.00")
        lines = rate(rule, [use("0.005", hours=1), use("0.005", hours=30)], started_at=T0)
        assert lines == [line("电量", "0.010", "kwh", "1.00", "0.02")]

    def test_defaults(self):
        rule = per_unit()
        assert rule == PerUnitRule(unit=Unit.HOUR, unit_price=D("1.00"))
        assert rule.to_dict() == {
            "kind": "per_unit",
            "unit": "hour",
            "unit_price": "1.00",
            "free_units": "0",
            "minimum_amount": "0.00",
            "cap_per_24h": None,
            "round_up": False,
        }

    def test_unit_price_is_stored_canonically(self):
        assert per_unit(unit_price="1").to_dict()["unit_price"] == "1.00"
        assert per_unit(unit_price="0.0170").to_dict()["unit_price"] == "0.017"
        assert per_unit(unit_price="0.0167").to_dict()["unit_price"] == "0.0167"


# --------------------------------------------------------------------------- tiered


class TestTiered:
    @pytest.fixture
    def rule(self) -> TieredRule:
        rule = parse_rule(TIERS_JSON)
        assert isinstance(rule, TieredRule)
        return rule

    def test_parsed(self, rule):
        assert rule == TieredRule(
            unit=Unit.KWH,
            tiers=(Tier(D("10"), D("1.20")), Tier(D("50"), D("1.00")), Tier(None, D("0.80"))),
        )

    def test_exactly_at_the_first_limit(self, rule):
        assert rate(rule, [use("10")], started_at=T0) == [line("第1档 (0–10 kwh)", "10", "kwh", "1.20", "12.00")]

    def test_just_above_the_first_limit(self, rule):
        assert rate(rule, [use("10.5")], started_at=T0) == [
            line("第1档 (0–10 kwh)", "10", "kwh", "1.20", "12.00"),
            line("第2档 (10–50 kwh)", "0.5", "kwh", "1.00", "0.50"),
        ]

    def test_exactly_at_the_second_limit(self, rule):
        lines = rate(rule, [use("20"), use("30")], started_at=T0)
        assert lines == [
            line("第1档 (0–10 kwh)", "10", "kwh", "1.20", "12.00"),
            line("第2档 (10–50 kwh)", "40", "kwh", "1.00", "40.00"),
        ]
        assert bill_total(lines) == D("52.00")

    def test_into_the_open_tier(self, rule):
        lines = rate(rule, [use("60")], started_at=T0)
        assert lines == [
            line("第1档 (0–10 kwh)", "10", "kwh", "1.20", "12.00"),
            line("第2档 (10–50 kwh)", "40", "kwh", "1.00", "40.00"),
            line("第3档 (50+ kwh)", "10", "kwh", "0.80", "8.00"),
        ]
        assert bill_total(lines) == D("60.00")

    def test_single_open_tier(self):
        rule = parse_rule({"kind": "tiered", "unit": "kwh", "tiers": [{"up_to": None, "unit_price": "0.80"}]})
        assert rate(rule, [use("12.5")], started_at=T0) == [line("第1档 (0+ kwh)", "12.5", "kwh", "0.80", "10.00")]

    def test_free_units_come_off_the_bottom(self):
        rule = parse_rule({**TIERS_JSON, "free_units": "5"})
        assert rate(rule, [use("12")], started_at=T0) == [line("第1档 (0–10 kwh)", "7", "kwh", "1.20", "8.40")]
        assert rate(rule, [use("17")], started_at=T0) == [
            line("第1档 (0–10 kwh)", "10", "kwh", "1.20", "12.00"),
            line("第2档 (10–50 kwh)", "2", "kwh", "1.00", "2.00"),
        ]

    def test_all_free_or_no_usage_gives_no_lines(self):
        rule = parse_rule({**TIERS_JSON, "free_units": "5"})
        assert rate(rule, [use("4")], started_at=T0) == []
        assert rate(rule, [], started_at=T0) == []

    def test_each_line_is_rounded_half_up(self):
        rule = parse_rule(
            {
                "kind": "tiered",
                "unit": "minute",
                "tiers": [{"up_to": "3", "unit_price": "0.0165"}, {"up_to": None, "unit_price": "0.0050"}],
            }
        )
        lines = rate(rule, [use("4")], started_at=T0)
        assert lines == [
            line("第1档 (0–3 minute)", "3", "minute", "0.0165", "0.05"),
            line("第2档 (3+ minute)", "1", "minute", "0.005", "0.01"),
        ]
        assert bill_total(lines) == D("0.06")


# --------------------------------------------------------------------------- express


class TestExpress:
    @pytest.fixture
    def rule(self) -> ExpressRule:
        rule = parse_rule(EXPRESS_JSON)
        assert isinstance(rule, ExpressRule)
        return rule

    def test_parsed(self, rule):
        assert rule == ExpressRule(D("1"), D("12.00"), D("2.00"), D("1.50"), D("0.005"), D("1.00"))

    @pytest.mark.parametrize("weight", ["0.8", "1"])
    def test_within_first_weight(self, rule, weight):
        assert rate(rule, [use(weight)], started_at=T0) == [line("首重费", "1", "item", "12.00", "12.00")]

    def test_additional_weight_is_rounded_up_to_whole_kg(self, rule):
        lines = rate(rule, [use("2.3")], started_at=T0)
        assert lines == [
            line("首重费", "1", "item", "12.00", "12.00"),
            line("续重费", "2", "kg", "2.00", "4.00"),
        ]
        assert bill_total(lines) == D("16.00")

    def test_weight_is_summed_over_usage_items(self, rule):
        lines = rate(rule, [use("1.5"), use("1.5")], started_at=T0)
        assert lines[1] == line("续重费", "2", "kg", "2.00", "4.00")

    def test_packaging(self, rule):
        lines = rate(rule, [use("1", packaging=True)], started_at=T0)
        assert lines == [
            line("首重费", "1", "item", "12.00", "12.00"),
            line("包装费", "1", "item", "1.50", "1.50"),
        ]
        assert bill_total(lines) == D("13.50")

    def test_packaging_only_when_asked_for_and_priced(self, rule):
        assert len(rate(rule, [use("1", packaging=False)], started_at=T0)) == 1
        assert len(rate(rule, [use("1", packaging="yes")], started_at=T0)) == 1
        free_packaging = parse_rule({**EXPRESS_JSON, "packaging_fee": "0.00"})
        assert len(rate(free_packaging, [use("1", packaging=True)], started_at=T0)) == 1

    def test_insurance_by_rate(self, rule):
        lines = rate(rule, [use("1", declared_value="1000.00")], started_at=T0)
        assert lines[-1] == line("保价费", "1", "item", "5.00", "5.00")

    def test_insurance_minimum_fee(self, rule):
        lines = rate(rule, [use("1", declared_value="100")], started_at=T0)  # 0.50 < 1.00
        assert lines[-1] == line("保价费", "1", "item", "1.00", "1.00")

    def test_insurance_rounds_half_up(self, rule):
        lines = rate(rule, [use("1", declared_value="333.30")], started_at=T0)  # 1.6665
        assert lines[-1].amount == D("1.67")

    def test_everything_together(self, rule):
        usage = [use("3.2", packaging=True, declared_value="2000.00")]
        lines = rate(rule, usage, started_at=T0)
        assert lines == [
            line("首重费", "1", "item", "12.00", "12.00"),
            line("续重费", "3", "kg", "2.00", "6.00"),
            line("包装费", "1", "item", "1.50", "1.50"),
            line("保价费", "1", "item", "10.00", "10.00"),
        ]
        assert bill_total(lines) == D("29.50")

    def test_no_insurance_without_declared_value_or_fee(self, rule):
        assert len(rate(rule, [use("1", declared_value="0")], started_at=T0)) == 1
        uninsured = parse_rule({**EXPRESS_JSON, "insurance_rate": "0", "insurance_min_fee": "0.00"})
        assert len(rate(uninsured, [use("1", declared_value="500.00")], started_at=T0)) == 1

    @pytest.mark.parametrize("declared", ["abc", "1.005", 12.5, "-3.00"])
    def test_bad_declared_value(self, rule, declared):
        with pytest.raises(PricingRuleError) as excinfo:
            rate(rule, [use("1", declared_value=declared)], started_at=T0)
        assert set(excinfo.value.errors) == {"declared_value"}

    def test_no_weight_no_lines(self, rule):
        assert rate(rule, [], started_at=T0) == []
        assert rate(rule, [use("0", packaging=True)], started_at=T0) == []

    def test_minimal_json_gets_defaults(self):
        rule = parse_rule(
            {
                "kind": "express",
                "first_weight_kg": "0.5",
                "first_weight_fee": "8.00",
                "additional_per_kg": "1.00",
            }
        )
        assert rule == ExpressRule(D("0.5"), D("8.00"), D("1.00"))

    def test_insurance_rate_is_at_most_one(self):
        assert "insurance_rate" in errors_of({**EXPRESS_JSON, "insurance_rate": "1.5"})
        assert "insurance_rate" in errors_of({**EXPRESS_JSON, "insurance_rate": "0.00001"})


# --------------------------------------------------------------------------- usage checks, totals


ALL_RULES = [
    {"kind": "fixed", "price": "9.90"},
    {"kind": "per_unit", "unit": "hour", "unit_price": "1.00"},
    TIERS_JSON,
    EXPRESS_JSON,
]


@pytest.mark.parametrize("data", ALL_RULES, ids=lambda d: d["kind"])
def test_negative_usage_is_refused_by_every_kind(data):
    with pytest.raises(PricingRuleError) as excinfo:
        rate(parse_rule(data), [use("2"), use("-1")], started_at=T0)
    assert set(excinfo.value.errors) == {"quantity"}


@pytest.mark.parametrize("quantity", [1.5, "2", D("NaN")])
def test_non_decimal_usage_is_refused(quantity):
    with pytest.raises(PricingRuleError) as excinfo:
        rate(per_unit(), [UsageItem(quantity, T0)], started_at=T0)
    assert set(excinfo.value.errors) == {"quantity"}


def test_naive_usage_time_is_refused_when_windows_need_it():
    rule = per_unit(unit="kwh", cap_per_24h="10.00")
    with pytest.raises(PricingRuleError) as excinfo:
        rate(rule, [UsageItem(D("1"), datetime(2025, 3, 1, 9, 0))], started_at=T0)
    assert set(excinfo.value.errors) == {"occurred_at"}


def test_rate_refuses_something_that_is_not_a_rule():
    with pytest.raises(TypeError):
        rate({"kind": "fixed", "price": "1.00"}, [], started_at=T0)  # type: ignore[arg-type]


class TestBillTotal:
    def test_charges_minus_discounts(self):
        lines = [
            line("使用时长", "30", "hour", "1.00", "30.00"),
            line("每24小时封顶减免", "1", "item", "14.00", "14.00", discount=True),
            line("最低消费补足", "1", "item", "0.99", "0.99"),
        ]
        assert bill_total(lines) == D("16.99")

    def test_empty_is_zero_with_two_places(self):
        total = bill_total([])
        assert total == D("0") and str(total) == "0.00"

    def test_result_is_rounded_to_the_fen(self):
        assert str(bill_total([line("x", "1", "item", "1.005", "1.005")])) == "1.01"

    def test_accepts_any_iterable(self):
        assert bill_total(line("x", "1", "item", "2.00", "2.00") for _ in range(3)) == D("6.00")


# --------------------------------------------------------------------------- describe


@pytest.mark.parametrize(
    ("data", "zh", "en"),
    [
        ({"kind": "fixed", "price": "99.00"}, "一口价¥99.00", "Fixed price ¥99.00"),
        (
            {"kind": "per_unit", "unit": "hour", "unit_price": "1.00", "cap_per_24h": "10.00"},
            "¥1.00/小时，每24小时封顶¥10.00",
            "¥1.00/hour, capped at ¥10.00 per 24 h",
        ),
        (
            {
                "kind": "per_unit",
                "unit": "minute",
                "unit_price": "0.0167",
                "free_units": "15",
                "round_up": True,
                "minimum_amount": "2.00",
            },
            "¥0.0167/分钟，前15分钟免费，不足1分钟按1分钟计，最低消费¥2.00",
            "¥0.0167/minute, first 15 minutes free, each started minute billed in full, minimum charge ¥2.00",
        ),
        (
            {"kind": "per_unit", "unit": "kwh", "unit_price": "1.5", "free_units": "1"},
            "¥1.50/度，前1度免费",
            "¥1.50/kWh, first 1 kWh free",
        ),
        ({"kind": "per_unit", "unit": "visit", "unit_price": "30"}, "¥30.00/次", "¥30.00/visit"),
        (
            TIERS_JSON,
            "阶梯计价：0–10度 ¥1.20/度；10–50度 ¥1.00/度；50度以上 ¥0.80/度",
            "Tiered: 0–10 kWh at ¥1.20/kWh; 10–50 kWh at ¥1.00/kWh; over 50 kWh at ¥0.80/kWh",
        ),
        (
            {
                "kind": "tiered",
                "unit": "hour",
                "tiers": [{"up_to": None, "unit_price": "2.00"}],
                "free_units": "0.5",
            },
            "阶梯计价：¥2.00/小时，前0.5小时免费",
            "Tiered: ¥2.00/hour, first 0.5 hours free",
        ),
        (
            {**EXPRESS_JSON, "packaging_fee": "0.00"},
            "首重¥12.00（1kg），续重¥2.00/kg，保价费为声明价值的0.5%（最低¥1.00）",
            "¥12.00 for the first 1 kg, then ¥2.00/kg, insurance 0.5% of declared value (min ¥1.00)",
        ),
        (
            {
                "kind": "express",
                "first_weight_kg": "1",
                "first_weight_fee": "12.00",
                "additional_per_kg": "2.00",
            },
            "首重¥12.00（1kg），续重¥2.00/kg",
            "¥12.00 for the first 1 kg, then ¥2.00/kg",
        ),
        (
            {**EXPRESS_JSON, "insurance_rate": "0", "insurance_min_fee": "3.00"},
            "首重¥12.00（1kg），续重¥2.00/kg，包装费¥1.50，保价费¥3.00",
            "¥12.00 for the first 1 kg, then ¥2.00/kg, packaging ¥1.50, insurance ¥3.00",
        ),
    ],
)
def test_describe(data, zh, en):
    rule = parse_rule(data)
    assert describe(rule) == zh
    assert describe(rule, "zh-hans") == zh
    assert describe(rule, "en") == en
    assert describe(rule, "en-gb") == en


# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize(
    "data",
    [
        *ALL_RULES,
        {"kind": "fixed", "price": "0.01", "name": "直播间商品"},
        {
            "kind": "per_unit",
            "unit": "minute",
            "unit_price": "0.0167",
            "free_units": "1.5",
            "minimum_amount": "3.00",
            "cap_per_24h": "20.00",
            "round_up": True,
        },
    ],
)
def test_to_dict_round_trips(data):
    rule = parse_rule(data)
    assert parse_rule(rule.to_dict()) == rule
    assert rule.to_dict()["kind"] == rule.kind.value


def test_to_dict_is_canonical_json():
    rule = parse_rule(TIERS_JSON)
    assert rule.to_dict() == TIERS_JSON
    assert parse_rule(EXPRESS_JSON).to_dict() == EXPRESS_JSON


units = st.sampled_from(list(Unit))
unit_prices = st.decimals(min_value=0, max_value=1000, places=4, allow_nan=False, allow_infinity=False)
quantities = st.decimals(min_value=0, max_value=200, places=4, allow_nan=False, allow_infinity=False)
amounts = st.decimals(min_value=0, max_value=500, places=2, allow_nan=False, allow_infinity=False)
caps = st.none() | st.decimals(min_value=D("0.01"), max_value=500, places=2, allow_nan=False, allow_infinity=False)


@st.composite
def per_unit_json(draw: st.DrawFn) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kind": "per_unit",
        "unit": draw(units).value,
        "unit_price": str(draw(unit_prices)),
    }
    if draw(st.booleans()):
        data["free_units"] = str(draw(quantities))
    if draw(st.booleans()):
        data["minimum_amount"] = str(draw(amounts))
    if draw(st.booleans()):
        cap = draw(caps)
        data["cap_per_24h"] = None if cap is None else str(cap)
    if draw(st.booleans()):
        data["round_up"] = draw(st.booleans())
    return data


usage_items = st.lists(
    st.builds(
        lambda quantity, minutes: UsageItem(quantity, T0 + timedelta(minutes=minutes)),
        quantities,
        st.integers(min_value=-600, max_value=10 * 1440),
    ),
    max_size=8,
)


@given(per_unit_json())
def test_per_unit_round_trip_property(data):
    rule = parse_rule(data)
    assert parse_rule(rule.to_dict()) == rule
    assert rule.to_dict() == parse_rule(rule.to_dict()).to_dict()


@settings(max_examples=200)
@given(per_unit_json(), usage_items)
def test_total_never_negative_and_caps_never_exceeded(data, usage):
    rule = parse_rule(data)
    assert isinstance(rule, PerUnitRule)
    lines = rate(rule, usage, started_at=T0)
    total = bill_total(lines)
    assert total >= 0
    if sum((item.quantity for item in usage), D(0)) == 0:
        assert lines == []
        return
    windows = rule.windows(usage, started_at=T0)
    charged = sum((w.charged * w.count for w in windows), D(0))
    for window in windows:
        assert window.charged <= window.amount
        if rule.cap_per_24h is not None:
            assert window.charged <= rule.cap_per_24h
    assert total == max(charged, rule.minimum_amount)
    if rule.cap_per_24h is not None and rule.unit in (Unit.HOUR, Unit.MINUTE):
        window_length = 24 if rule.unit == Unit.HOUR else 1440
        assert sum(w.count for w in windows) == ceil_units(total_quantity(usage) / window_length)
    for item in lines:
        assert item.amount >= 0 and item.amount == item.amount.quantize(D("0.01"))


def total_quantity(usage: list[UsageItem]) -> D:
    return sum((item.quantity for item in usage), D(0))


# --------------------------------------------------------------------------- validation


class TestValidation:
    def test_not_an_object(self):
        assert set(errors_of(["fixed"])) == {"__all__"}

    def test_missing_kind(self):
        assert set(errors_of({"price": "1.00"})) == {"kind"}

    def test_unknown_kind(self):
        errors = errors_of({"kind": "subscription", "price": "1.00"})
        assert set(errors) == {"kind"}
        assert "subscription" in errors["kind"]

    def test_unknown_key(self):
        errors = errors_of({"kind": "fixed", "price": "1.00", "currency": "CNY"})
        assert errors == {"currency": "Unknown field."}

    def test_missing_key(self):
        assert errors_of({"kind": "per_unit", "unit": "hour"}) == {"unit_price": "This field is required."}
        assert set(errors_of({"kind": "per_unit", "unit_price": "1.00"})) == {"unit"}
        assert set(errors_of({"kind": "fixed"})) == {"price"}
        assert set(errors_of({"kind": "tiered", "unit": "kwh"})) == {"tiers"}
        assert set(errors_of({"kind": "express", "first_weight_kg": "1", "first_weight_fee": "12.00"})) == {
            "additional_per_kg"
        }

    @pytest.mark.parametrize(
        ("data", "field"),
        [
            ({"kind": "fixed", "price": "-1.00"}, "price"),
            ({"kind": "per_unit", "unit": "hour", "unit_price": "-0.50"}, "unit_price"),
            ({"kind": "per_unit", "unit": "hour", "unit_price": "1", "free_units": "-1"}, "free_units"),
            (
                {"kind": "per_unit", "unit": "hour", "unit_price": "1", "minimum_amount": "-1.00"},
                "minimum_amount",
            ),
            ({**EXPRESS_JSON, "packaging_fee": "-0.01"}, "packaging_fee"),
        ],
    )
    def test_negative(self, data, field):
        assert set(errors_of(data)) == {field}

    @pytest.mark.parametrize(
        ("data", "field"),
        [
            ({"kind": "fixed", "price": "1.005"}, "price"),
            ({"kind": "per_unit", "unit": "hour", "unit_price": "1", "cap_per_24h": "10.001"}, "cap_per_24h"),
            ({**EXPRESS_JSON, "first_weight_fee": "12.000"}, "first_weight_fee"),
        ],
    )
    def test_three_decimal_money(self, data, field):
        errors = errors_of(data)
        assert set(errors) == {field}
        assert "two decimal places" in errors[field]

    def test_unit_price_allows_four_places_not_five(self):
        assert per_unit(unit_price="0.0001").unit_price == D("0.0001")
        assert set(errors_of({"kind": "per_unit", "unit": "hour", "unit_price": "0.00001"})) == {"unit_price"}

    @pytest.mark.parametrize(
        ("data", "field"),
        [
            ({"kind": "fixed", "price": 99.0}, "price"),
            ({"kind": "per_unit", "unit": "hour", "unit_price": 1.0}, "unit_price"),
            ({"kind": "per_unit", "unit": "hour", "unit_price": "1", "free_units": 0.5}, "free_units"),
            ({**EXPRESS_JSON, "first_weight_kg": 1.0}, "first_weight_kg"),
        ],
    )
    def test_float_value(self, data, field):
        errors = errors_of(data)
        assert set(errors) == {field}
        assert "floating-point" in errors[field]

    @pytest.mark.parametrize("value", ["abc", "", "1,00", "Infinity", "NaN", [], True])
    def test_non_decimal(self, value):
        assert set(errors_of({"kind": "per_unit", "unit": "hour", "unit_price": value})) == {"unit_price"}
        assert set(errors_of({"kind": "fixed", "price": value})) == {"price"}

    def test_unknown_unit(self):
        assert set(errors_of({"kind": "per_unit", "unit": "day", "unit_price": "1"})) == {"unit"}

    def test_cap_must_be_positive_or_null(self):
        assert set(errors_of({"kind": "per_unit", "unit": "hour", "unit_price": "1", "cap_per_24h": "0"})) == {
            "cap_per_24h"
        }
        assert per_unit(cap_per_24h=None).cap_per_24h is None

    def test_round_up_must_be_a_boolean(self):
        data = {"kind": "per_unit", "unit": "hour", "unit_price": "1", "round_up": "true"}
        assert set(errors_of(data)) == {"round_up"}

    def test_first_weight_must_be_positive(self):
        assert set(errors_of({**EXPRESS_JSON, "first_weight_kg": "0"})) == {"first_weight_kg"}

    def test_every_problem_is_reported_at_once(self):
        errors = errors_of({"kind": "per_unit", "unit": "day", "unit_price": 1.5, "round_up": 1, "extra": 1})
        assert set(errors) == {"unit", "unit_price", "round_up", "extra"}

    def test_tiers_not_increasing(self):
        tiers = [
            {"up_to": "10", "unit_price": "1"},
            {"up_to": "10", "unit_price": "1"},
            {"up_to": None, "unit_price": "1"},
        ]
        errors = errors_of({"kind": "tiered", "unit": "kwh", "tiers": tiers})
        assert set(errors) == {"tiers[1].up_to"}
        assert "increase" in errors["tiers[1].up_to"]

    def test_last_tier_not_null(self):
        tiers = [{"up_to": "10", "unit_price": "1"}, {"up_to": "20", "unit_price": "1"}]
        errors = errors_of({"kind": "tiered", "unit": "kwh", "tiers": tiers})
        assert set(errors) == {"tiers[1].up_to"}
        assert "open-ended" in errors["tiers[1].up_to"]

    def test_only_the_last_tier_may_be_null(self):
        tiers = [{"up_to": None, "unit_price": "1"}, {"up_to": None, "unit_price": "1"}]
        assert set(errors_of({"kind": "tiered", "unit": "kwh", "tiers": tiers})) == {"tiers[0].up_to"}

    @pytest.mark.parametrize("tiers", [[], None, "10:1.00", {"up_to": None}])
    def test_tiers_must_be_a_non_empty_list(self, tiers):
        assert set(errors_of({"kind": "tiered", "unit": "kwh", "tiers": tiers})) == {"tiers"}

    def test_tier_fields(self):
        tiers = [
            {"up_to": "0", "unit_price": "1"},
            {"up_to": "5", "unit_price": "-1", "note": "x"},
            {"unit_price": "1"},
            "oops",
        ]
        errors = errors_of({"kind": "tiered", "unit": "kwh", "tiers": tiers})
        assert set(errors) == {
            "tiers[0].up_to",
            "tiers[1].unit_price",
            "tiers[1].note",
            "tiers[2].up_to",
            "tiers[3]",
        }

    def test_error_message_names_the_fields(self):
        with pytest.raises(PricingRuleError, match="unit_price"):
            parse_rule({"kind": "per_unit", "unit": "hour", "unit_price": "x"})
        assert issubclass(PricingRuleError, ValueError)
