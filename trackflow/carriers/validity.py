"""Whether a tracking number fits the carrier it was registered with: the warnings a
registration answers with (`POST /v1/shipments` `warnings`), pinned with the shipment.

A number is never refused for its format here (carriers add formats; the table is a snapshot):
it is accepted with a warning, unless the store asked for a refusal
(`TRACKFLOW_REJECT_INVALID_NUMBERS`). The rules, for the carrier the store named:

* a carrier of our format table (`FORMATS`): fine when one of its formats validly accepts the
  number; `check_digit` when one has its shape but not its check digit; else fine when another
  carrier's format *with a check digit* validly accepts it (a label handed to another carrier,
  resolved by `trackflow.carriers.resolve`, not a wrong number); else `not_carrier_format`;
* no carrier: fine when any format validly accepts the number; `check_digit` when formats fit
  by shape only; `unknown_format` when none fits;
* a carrier our table does not know (a regional courier): nothing can be said, no warning.
"""

from __future__ import annotations

from trackflow.carriers import FORMATS, CarrierMatch, courier_display_name, detect
from trackflow.models import NumberWarning, NumberWarningCode

_COURIERS = frozenset(fmt.courier for fmt in FORMATS)
_WITH_CHECK_DIGIT = frozenset(fmt.id for fmt in FORMATS if fmt.verify is not None)


def number_warnings(number: str, carrier: str | None) -> list[NumberWarning]:
    """What looks wrong with `number` registered with `carrier` (a carrier code, as
    `Shipment.carrier` holds it); empty when nothing does."""
    matches = detect(number)
    if carrier is None:
        return _undeclared(number, matches)
    if carrier not in _COURIERS:
        return []
    name = courier_display_name(carrier)
    own = [match for match in matches if match.courier == carrier]
    if any(match.valid for match in own):
        return []
    if own:
        return [_check_digit(number, name)]
    if any(match.valid and match.format in _WITH_CHECK_DIGIT for match in matches):
        return []
    return [
        NumberWarning(
            code=NumberWarningCode.NOT_CARRIER_FORMAT,
            message=f"{number} does not look like a {name} tracking number (it fits none of "
            f"{name}'s formats): check the number and the carrier",
        )
    ]


def _undeclared(number: str, matches: list[CarrierMatch]) -> list[NumberWarning]:
    if any(match.valid for match in matches):
        return []
    if matches:
        return [_check_digit(number, courier_display_name(matches[0].courier))]
    return [
        NumberWarning(
            code=NumberWarningCode.UNKNOWN_FORMAT,
            message=f"{number} fits no tracking-number format trackflow knows and no carrier "
            "was given: check the number, or name its carrier",
        )
    ]


def _check_digit(number: str, name: str) -> NumberWarning:
    return NumberWarning(
        code=NumberWarningCode.CHECK_DIGIT,
        message=f"{number} has the shape of a {name} tracking number but not its check "
        "digit: a typo?",
    )
