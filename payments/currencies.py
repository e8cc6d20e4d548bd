"""
The currencies paymentsite accepts, in one table.

`minimum` is Stripe's minimum charge in the currency's minor unit (for a
zero-decimal currency the minor unit is the unit itself); `decimals` is how many
minor-unit digits the currency has, which is how amounts are shown to people.
"""

from dataclasses import dataclass

MAXIMUM_AMOUNT = 99_999_999


@dataclass(frozen=True)
class Currency:
    code: str
    minimum: int
    decimals: int
    symbol: str

    @property
    def zero_decimal(self) -> bool:
        return self.decimals == 0

    def format(self, amount: int) -> str:
        """`2000` in usd is `$20.00`; `500` in jpy is `¥500`."""
        sign = "-" if amount < 0 else ""
        amount = abs(amount)
        if self.zero_decimal:
            return f"{sign}{self.symbol}{amount:,}"
        units, cents = divmod(amount, 10**self.decimals)
        return f"{sign}{self.symbol}{units:,}.{cents:0{self.decimals}d}"


CURRENCIES: dict[str, Currency] = {
    c.code: c
    for c in (
        Currency("usd", 50, 2, "$"),
        Currency("eur", 50, 2, "€"),
        Currency("gbp", 30, 2, "£"),
        Currency("cad", 50, 2, "CA$"),
        Currency("aud", 50, 2, "A$"),
        Currency("chf", 50, 2, "CHF "),
        Currency("sek", 300, 2, "SEK "),
        Currency("nok", 300, 2, "NOK "),
        Currency("dkk", 250, 2, "DKK "),
        Currency("jpy", 50, 0, "¥"),
        Currency("krw", 700, 0, "₩"),
    )
}


def get_currency(code: str) -> Currency | None:
    return CURRENCIES.get(code.lower()) if isinstance(code, str) else None


def format_amount(amount: int, currency: str) -> str:
    found = get_currency(currency)
    if found is None:
        return f"{amount} {currency}"
    return found.format(amount)
