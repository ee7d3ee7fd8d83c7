"""ISO 4217 minor units: how many decimal digits each currency's money has."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

# Exponents differing from 2, per ISO 4217 (list one, 2024 edition).
_EXPONENT_0 = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_EXPONENT_3 = "BHD IQD JOD KWD LYD OMR TND"
_EXPONENT_4 = "CLF UYW"
_EXPONENT_2 = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN "
    "BZD CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS "
    "GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR "
    "LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD "
    "PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN "
    "SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VES WST XCD XCG YER ZAR ZMW ZWG"
)

MINOR_UNITS: dict[str, int] = {
    code: exponent
    for exponent, codes in ((0, _EXPONENT_0), (2, _EXPONENT_2), (3, _EXPONENT_3), (4, _EXPONENT_4))
    for code in codes.split()
}


def minor_units(currency: str) -> int:
    """Decimal digits of ``currency``'s minor unit: ``minor_units("JPY") == 0``."""
    return MINOR_UNITS[currency]


def round_money(amount: Decimal | Fraction | int, currency: str) -> Decimal:
    """Exact ``amount`` rounded half-up (away from zero) to ``currency``'s minor unit.

    Takes a `Fraction` too, so prorations are rounded once, from their exact value.

    >>> str(round_money(Decimal("6.4895"), "KWD")), str(round_money(Fraction(1053, 2), "JPY"))
    ('6.490', '527')
    """
    digits = minor_units(currency)
    scaled = Fraction(amount) * 10**digits
    magnitude = math.floor(abs(scaled) + Fraction(1, 2))
    units = magnitude if scaled >= 0 else -magnitude
    return Decimal(units).scaleb(-digits).quantize(Decimal(1).scaleb(-digits))


def format_money(amount: Decimal, currency: str) -> str:
    """``amount`` (already a whole number of minor units) as text with exactly the currency's
    minor digits, the way exports show money: USD "41.00", JPY "527", KWD "6.490"."""
    exponent = Decimal(1).scaleb(-minor_units(currency))
    shown = amount.quantize(exponent)
    if shown != amount:
        raise ValueError(f"{amount} {currency} is not a whole number of minor units")
    return str(shown)
