"""
Every currency Stripe charges in, in one table, and how its amounts are written.

Amounts are integers in the currency's minor unit, as Stripe takes them
(docs.stripe.com/currencies):

- two-decimal currencies (most): 2000 is 20.00;
- zero-decimal currencies: the amount is the unit itself (500 jpy is ¥500);
- three-decimal currencies (bhd jod kwd omr tnd): 5124 is 5.124, and Stripe only
  takes amounts whose last digit is 0 (5120), so `step` is 10;
- ISK is zero-decimal at the banks, but Stripe keeps two decimals in the API for
  compatibility: amounts must be whole krónur (a multiple of 100).

`minimum` is Stripe's published minimum charge ("Minimum and maximum charge
amounts") in minor units, for the currencies it publishes one for; for the others
Stripe's minimum is the equivalent of the settlement currency's at the day's
exchange rate, which only Stripe knows: there `minimum` is None, and Stripe's own
refusal of a smaller amount is the answer.

A currency outside the table (a PaymentIntent adopted from Stripe in a currency
added after this table was written) still displays and works: `get_currency`
answers a generic two-decimal currency for any three-letter code.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

# Stripe takes at most eight digits ($999,999.99) in an amount.
MAXIMUM_AMOUNT = 99_999_999


@dataclass(frozen=True)
class Currency:
    code: str
    decimals: int = 2
    minimum: int | None = None
    symbol: str = ""
    # Amounts must be a multiple of this (10 for three-decimal currencies, 100 for isk).
    step: int = 1
    # Whether the currency is in Stripe's table (False: a generic stand-in for an unknown code).
    known: bool = True

    @property
    def zero_decimal(self) -> bool:
        return self.decimals == 0

    @property
    def smallest_amount(self) -> int:
        """The smallest amount a payment may ask for, in minor units."""
        return max(self.minimum or 1, self.step)

    def format(self, amount: int) -> str:
        """`2000` in usd is `$20.00`; `500` in jpy is `¥500`; `5120` in kwd is `KWD 5.120`."""
        sign = "-" if amount < 0 else ""
        amount = abs(amount)
        symbol = self.symbol or f"{self.code.upper()} "
        if self.zero_decimal:
            return f"{sign}{symbol}{amount:,}"
        units, fraction = divmod(amount, 10**self.decimals)
        return f"{sign}{symbol}{units:,}.{fraction:0{self.decimals}d}"

    def to_units(self, amount: int) -> Decimal:
        """Minor units as the decimal people type: 2050 usd is Decimal('20.50')."""
        return Decimal(amount).scaleb(-self.decimals)

    def to_minor(self, value: Decimal) -> int:
        """The decimal people type as minor units: Decimal('20.5') usd is 2050. ValueError for finer amounts."""
        minor = value.scaleb(self.decimals)
        if minor != minor.to_integral_value():
            raise ValueError(f"{self.code.upper()} has {self.decimals} decimals.")
        return int(minor)

    def amount_problem(self, amount: int) -> str | None:
        """What is wrong with `amount` (minor units) as a charge in this currency, as a sentence; None if fine."""
        if amount <= 0:
            return "The amount must be a positive number of minor units."
        if amount < self.smallest_amount:
            return f"At least {self.smallest_amount} ({self.format(self.smallest_amount)}) for {self.code}."
        if amount > MAXIMUM_AMOUNT:
            return f"At most {MAXIMUM_AMOUNT} ({self.format(MAXIMUM_AMOUNT)}) for {self.code}."
        if amount % self.step:
            return (
                f"{self.code.upper()} amounts must be a multiple of {self.step} minor units "
                f"(e.g. {self.format(amount - amount % self.step)})."
            )
        return None


def _table() -> dict[str, Currency]:
    # Stripe's minimum charge amounts, in minor units.
    minimums = {
        "usd": 50, "aed": 200, "aud": 50, "bgn": 100, "brl": 50, "cad": 50, "chf": 50, "czk": 1500,
        "dkk": 250, "eur": 50, "gbp": 30, "hkd": 400, "huf": 17500, "inr": 50, "jpy": 50, "mxn": 1000,
        "myr": 200, "nok": 300, "nzd": 50, "pln": 200, "ron": 200, "sek": 300, "sgd": 50, "thb": 1000,
    }  # fmt: skip
    symbols = {
        "usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "krw": "₩", "inr": "₹", "cad": "CA$", "aud": "A$",
        "nzd": "NZ$", "hkd": "HK$", "sgd": "S$", "mxn": "MX$", "brl": "R$", "chf": "CHF ",
    }  # fmt: skip
    zero_decimal = "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split()
    three_decimal = "bhd jod kwd omr tnd".split()
    two_decimal = """
        usd aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bmd bnd bob brl bsd bwp byn bzd cad
        cdf chf cny cop crc cve czk dkk dop dzd egp etb eur fjd fkp gbp gel gip gmd gtq gyd hkd hnl htg
        huf idr ils inr isk jmd kes kgs khr kyd kzt lak lbp lkr lrd lsl mad mdl mkd mmk mnt mop mur mvr
        mwk mxn myr mzn nad ngn nio nok npr nzd pab pen pgk php pkr pln qar ron rsd rub sar sbd scr sek
        sgd shp sle sos srd std szl thb tjs top try ttd twd tzs uah uyu uzs wst xcd xcg yer zar zmw
    """.split()
    table = {}
    for decimals, codes in ((2, two_decimal), (0, zero_decimal), (3, three_decimal)):
        for code in codes:
            step = 10 if decimals == 3 else 100 if code == "isk" else 1
            table[code] = Currency(code, decimals, minimums.get(code), symbols.get(code, ""), step)
    return table


CURRENCIES: dict[str, Currency] = _table()


def get_currency(code: str) -> Currency:
    """
    The currency of a three-letter code (any case): from the table, or, for a code
    the table lacks, a generic two-decimal currency shown with its code ("XYZ 12.34").
    """
    code = str(code or "").lower()
    return CURRENCIES.get(code) or Currency(code or "???", known=False)


def format_amount(amount: int, currency: str) -> str:
    return get_currency(currency).format(amount)
