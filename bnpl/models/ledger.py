"""The platform's double-entry ledger: accounts, transactions and their entries.

Every movement of money is a :class:`LedgerTransaction` whose :class:`LedgerEntry`
rows sum to zero (debits positive, credits negative). Entries and transactions are
append-only; a mistake is corrected by a new posting, never by editing an old one.
Both rules are enforced by the database itself (migration ``0003_ledger_triggers``),
so they hold against ``queryset.update()``, ``.delete()`` and raw SQL too. Balances
are never stored: an account's balance is the sum of its entries.

docs/ledger.md describes the accounts and the posting of each business fact.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _


class AccountKind(models.TextChoices):
    """What an account records. Per-party kinds have one account per consumer or merchant."""

    CONSUMER_RECEIVABLE = "consumer_receivable", _("Consumer receivable")
    MERCHANT_PAYABLE = "merchant_payable", _("Merchant payable")
    PLATFORM_FEE_REVENUE = "platform_fee_revenue", _("Platform fee revenue")
    PAYMENT_CLEARING = "payment_clearing", _("Payment clearing")
    GUARANTEE_ADVANCES = "guarantee_advances", _("Guarantee advances")
    BAD_DEBT = "bad_debt", _("Bad debt")


class NormalSide(models.TextChoices):
    """The side on which an account's balance normally sits (its sign in our convention)."""

    DEBIT = "debit", _("Debit")
    CREDIT = "credit", _("Credit")


# Debit-normal accounts (assets, expenses) have positive balances; credit-normal ones
# (liabilities, revenue, funding) negative balances. See docs/ledger.md.
NORMAL_SIDE: dict[str, str] = {
    AccountKind.CONSUMER_RECEIVABLE: NormalSide.DEBIT,
    AccountKind.MERCHANT_PAYABLE: NormalSide.CREDIT,
    AccountKind.PLATFORM_FEE_REVENUE: NormalSide.CREDIT,
    AccountKind.PAYMENT_CLEARING: NormalSide.DEBIT,
    AccountKind.GUARANTEE_ADVANCES: NormalSide.CREDIT,
    AccountKind.BAD_DEBT: NormalSide.DEBIT,
}


class TransactionKind(models.TextChoices):
    """The business fact a ledger transaction records (one posting helper each in bnpl/ledger.py)."""

    COMPLETION = "completion", _("Completion")
    CHARGE = "charge", _("Charge")
    REFUND = "refund", _("Refund")
    GUARANTEE = "guarantee", _("Guarantee")
    PAYOUT = "payout", _("Payout")
    WRITE_OFF = "write_off", _("Write-off")
    FEE = "fee", _("Fee")
    ADJUSTMENT = "adjustment", _("Adjustment")


class LedgerAccount(models.Model):
    """An account of the platform's books, identified by a stable ``code``.

    Consumer receivables are kept per consumer (``consumer_receivable:c:<id>``) and
    merchant payables per merchant (``merchant_payable:m:<id>``) so that "what does
    this consumer owe" and "what do we owe this merchant" are one indexed sum; the
    other kinds are single platform-wide accounts whose code is the kind itself.
    Accounts are created on first use by ``bnpl.ledger.ledger_account_for``.
    """

    code = models.CharField(_("Code"), max_length=64, unique=True)
    kind = models.CharField(_("Kind"), max_length=32, choices=AccountKind.choices)
    consumer = models.ForeignKey(
        "consumers.Consumer", on_delete=models.PROTECT, null=True, blank=True, related_name="ledger_accounts"
    )
    merchant = models.ForeignKey(
        "merchants.Merchant", on_delete=models.PROTECT, null=True, blank=True, related_name="ledger_accounts"
    )
    created_at = models.DateTimeField(_("Created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("Ledger account")
        verbose_name_plural = _("Ledger accounts")
        ordering = ["code"]
        constraints = [
            # The party an account belongs to follows from its kind, so a receivable can
            # never be booked against a merchant or a platform account against a consumer.
            models.CheckConstraint(
                condition=(
                    Q(kind=AccountKind.CONSUMER_RECEIVABLE, consumer__isnull=False, merchant__isnull=True)
                    | Q(kind=AccountKind.MERCHANT_PAYABLE, consumer__isnull=True, merchant__isnull=False)
                    | (
                        Q(consumer__isnull=True, merchant__isnull=True)
                        & ~Q(kind__in=[AccountKind.CONSUMER_RECEIVABLE, AccountKind.MERCHANT_PAYABLE])
                    )
                ),
                name="ledger_account_party_matches_kind",
            ),
            models.UniqueConstraint(
                fields=["consumer"], condition=Q(kind="consumer_receivable"), name="ledger_account_one_per_consumer"
            ),
            models.UniqueConstraint(
                fields=["merchant"], condition=Q(kind="merchant_payable"), name="ledger_account_one_per_merchant"
            ),
        ]

    def __str__(self) -> str:
        return self.code

    @property
    def normal_side(self) -> str:
        """``debit`` or ``credit``: where this account's balance normally sits."""
        return NORMAL_SIDE[self.kind]


class LedgerTransaction(models.Model):
    """One business fact posted to the ledger: a set of entries that sums to zero.

    ``idempotency_key`` is derived from the fact (``charge:<attempt key>``,
    ``completion:<order id>``); its unique constraint makes a fact impossible to post
    twice even when two workers record it at the same moment. ``created_at`` is set by
    the database to the time of the database transaction that posted it.
    """

    kind = models.CharField(_("Kind"), max_length=16, choices=TransactionKind.choices)
    # Indexed by ledger_txn_order_kind_idx below (order first), so no separate FK index.
    order = models.ForeignKey(
        "bnpl.CreditOrder",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="ledger_transactions",
        db_index=False,
    )
    idempotency_key = models.CharField(_("Idempotency key"), max_length=128, unique=True)
    description = models.CharField(_("Description"), max_length=255, blank=True)
    created_at = models.DateTimeField(_("Posted at"), db_default=Now())

    class Meta:
        verbose_name = _("Ledger transaction")
        verbose_name_plural = _("Ledger transactions")
        ordering = ["-created_at", "-id"]
        indexes = [
            # "Which postings exist for this order, of this kind" (guarantee recovery, settlement).
            models.Index(fields=["order", "kind"], name="ledger_txn_order_kind_idx"),
        ]

    def __str__(self) -> str:
        return self.idempotency_key


class LedgerEntry(models.Model):
    """One side of a posting: a signed amount on one account (debit > 0, credit < 0)."""

    transaction = models.ForeignKey(LedgerTransaction, on_delete=models.PROTECT, related_name="entries")
    # The covering index below serves balance sums; a plain FK index would only duplicate it.
    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="entries", db_index=False)
    amount = models.DecimalField(_("Amount"), max_digits=14, decimal_places=2)
    created_at = models.DateTimeField(_("Posted at"), db_default=Now())

    class Meta:
        verbose_name = _("Ledger entry")
        verbose_name_plural = _("Ledger entries")
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="ledger_entry_amount_non_zero"),
        ]
        indexes = [
            # account_balance(): SUM(amount) per account as an index-only scan.
            models.Index(fields=["account", "id"], include=["amount"], name="ledger_entry_account_bal_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.account_id}: {self.amount}"
