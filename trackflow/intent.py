"""Is an inbound ticket a "where is my order?" (WISMO) question? Simple, documented rules.

Pure: no I/O, no clock. English, Spanish, French and German.

How a ticket is read
--------------------
1. Its subject and body are joined and *normalised*: lower case, accents dropped (é -> e,
   ü -> u, ñ -> n), ß -> ss, and every run of characters that is not a letter or digit
   becomes one space (so "where's" reads "where s" and "quand vais-je" reads "quand vais je").
2. Each phrase of the tables below is looked for at the *start of a word* (it may go on:
   "refund" also finds "refunded", "cancel" finds "cancellation", "rucksend" finds
   "Rücksendeetikett"), each phrase counting once however often it appears, and a phrase
   inside a longer matched one of its table not counting again.
3. Scores: a strong WISMO phrase ("where is my order", "no he recibido", "ou est mon colis",
   "wo bleibt mein paket") counts 3; a weak WISMO word ("tracking", "envio", "colis",
   "lieferung") counts 1; a negative phrase (refund, return, cancel, exchange, wrong size,
   damaged, and their translations) counts 3.
4. The ticket is WISMO when its WISMO score is at least `WISMO_THRESHOLD` (one strong
   phrase, or three weak words) **and** is greater than its negative score: the negatives win
   when they dominate or tie ("where is my refund?", "I want to cancel my order before it
   ships"), while a WISMO question that only mentions a refund as a threat ("where is my
   order? if it is not here by Friday I want a refund": 3 + weak words vs 3) stays WISMO.
5. The language guess counts small common words ("the", "mi", "est", "ich"...) per language,
   plus 3 for each table phrase of that language that matched; the highest wins, a tie or
   nothing at all is "unknown".

`rule` names what decided: the strongest WISMO phrase (`en:wismo:where is my order`), the
strongest negative one (`de:negative:ruckerstattung`), or `none`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from enum import StrEnum
from typing import Literal

from trackflow.models import Model

Language = Literal["en", "es", "fr", "de", "unknown"]
LANGUAGES: tuple[Literal["en", "es", "fr", "de"], ...] = ("en", "es", "fr", "de")

STRONG = 3
WEAK = 1
NEGATIVE = 3
WISMO_THRESHOLD = 3


class Intent(StrEnum):
    WISMO = "wismo"
    OTHER = "other"


class TicketIntent(Model):
    """What the rules made of one ticket."""

    intent: Intent
    language: Language
    rule: str
    wismo_score: int = 0
    negative_score: int = 0


# --- the tables (already normalised: lower case, no accents, spaces for punctuation) --------

WISMO_STRONG: dict[str, tuple[str, ...]] = {
    "en": (
        "where is my order",
        "where s my order",
        "wheres my order",
        "where is my package",
        "where s my package",
        "where is my parcel",
        "where is my shipment",
        "where is my delivery",
        "has my order shipped",
        "has my order been shipped",
        "has my order been sent",
        "when will my order arrive",
        "when will my package arrive",
        "when will my parcel arrive",
        "when will i receive",
        "when will i get my",
        "not received my order",
        "haven t received",
        "havent received",
        "have not received",
        "still not received",
        "didn t receive my",
        "did not receive my",
        "never arrived",
        "hasn t arrived",
        "has not arrived",
        "not arrived yet",
        "still waiting for my",
        "still waiting on my",
        "order status",
        "status of my order",
        "tracking number",
        "track my order",
        "track my package",
        "tracking hasn t",
        "tracking has not",
        "tracking isn t",
        "tracking not updat",
        "no tracking update",
        "order is late",
        "package is late",
        "parcel is late",
        "delivery status",
        "estimated delivery",
        "says delivered but",
        "marked as delivered but",
        "any update on my order",
    ),
    "es": (
        "donde esta mi pedido",
        "donde esta mi paquete",
        "donde esta mi envio",
        "donde esta mi orden",
        "donde queda mi pedido",
        "no he recibido",
        "aun no he recibido",
        "todavia no he recibido",
        "no ha llegado",
        "no me ha llegado",
        "no me llega",
        "no llega mi",
        "mi pedido no llega",
        "cuando llega",
        "cuando llegara",
        "cuando recibire",
        "cuando voy a recibir",
        "estado de mi pedido",
        "estado del pedido",
        "estado de mi envio",
        "numero de seguimiento",
        "seguimiento de mi pedido",
        "seguimiento del pedido",
        "sigo esperando mi",
        "ya fue enviado",
        "ya se envio",
        "ha sido enviado",
    ),
    "fr": (
        "ou est ma commande",
        "ou est mon colis",
        "ou en est ma commande",
        "ou en est mon colis",
        "je n ai pas recu",
        "je n ai toujours pas recu",
        "pas encore recu",
        "toujours pas recu",
        "n est pas arrive",
        "n est toujours pas arrive",
        "pas encore arrive",
        "quand vais je recevoir",
        "quand est ce que je vais recevoir",
        "quand vais je etre livre",
        "quand sera livre",
        "quand ma commande",
        "quand mon colis",
        "suivi de commande",
        "suivi de ma commande",
        "suivi du colis",
        "suivi de mon colis",
        "numero de suivi",
        "statut de ma commande",
        "etat de ma commande",
        "colis en retard",
        "commande en retard",
        "toujours en attente de ma commande",
        "toujours en attente de mon colis",
        "pas de nouvelles de ma commande",
        "a t elle ete expediee",
        "a t il ete expedie",
    ),
    "de": (
        "wo ist meine bestellung",
        "wo ist mein paket",
        "wo ist meine lieferung",
        "wo ist meine sendung",
        "wo bleibt meine bestellung",
        "wo bleibt mein paket",
        "wo bleibt meine lieferung",
        "noch nicht erhalten",
        "noch nicht angekommen",
        "nicht angekommen",
        "nie angekommen",
        "nicht erhalten",
        "immer noch nicht da",
        "noch nicht da",
        "wann kommt",
        "wann wird meine bestellung",
        "wann wird mein paket",
        "wann erhalte ich",
        "wann bekomme ich",
        "sendungsverfolgung",
        "sendungsnummer",
        "trackingnummer",
        "tracking nummer",
        "status meiner bestellung",
        "bestellstatus",
        "lieferstatus",
        "wurde meine bestellung versendet",
        "wurde meine bestellung verschickt",
        "ist meine bestellung versandt",
        "warte immer noch auf",
        "warte noch auf",
    ),
}

WISMO_WEAK: dict[str, tuple[str, ...]] = {
    "en": (
        "tracking",
        "shipped",
        "shipping",
        "delivery",
        "arriv",
        "package",
        "parcel",
        "delivered",
        "courier",
        "carrier",
        "in transit",
        "delay",
    ),
    "es": (
        "seguimiento",
        "envio",
        "enviado",
        "entrega",
        "paquete",
        "llegar",
        "llega",
        "repartidor",
        "transportista",
        "retraso",
        "retrasado",
    ),
    "fr": (
        "suivi",
        "livraison",
        "colis",
        "expedie",
        "livre",
        "transporteur",
        "retard",
        "arrive",
        "recu",
    ),
    "de": (
        "lieferung",
        "versand",
        "versendet",
        "verschickt",
        "paket",
        "zustellung",
        "geliefert",
        "sendung",
        "verspat",
        "spediteur",
        "zusteller",
    ),
}

NEGATIVES: dict[str, tuple[str, ...]] = {
    "en": (
        "refund",
        "return",
        "send it back",
        "cancel",
        "exchange",
        "wrong size",
        "wrong colour",
        "wrong color",
        "wrong item",
        "wrong product",
        "too small",
        "too big",
        "too large",
        "doesn t fit",
        "does not fit",
        "damaged",
        "broken",
        "defective",
        "faulty",
        "money back",
        "chargeback",
        "discount code",
        "promo code",
        "unsubscribe",
        "invoice",
    ),
    "es": (
        "reembols",
        "devolucion",
        "devolver",
        "cancelar",
        "cancelacion",
        "anular",
        "talla equivocada",
        "talla incorrecta",
        "cambiar la talla",
        "cambio de talla",
        "me queda pequeno",
        "me queda grande",
        "danado",
        "roto",
        "defectuoso",
        "producto equivocado",
        "articulo equivocado",
        "mi dinero",
        "codigo de descuento",
        "factura",
    ),
    "fr": (
        "rembourse",
        "retour",
        "renvoyer",
        "annuler",
        "annulation",
        "mauvaise taille",
        "trop petit",
        "trop grand",
        "echange",
        "endommage",
        "casse",
        "defectueux",
        "mauvais article",
        "mauvais produit",
        "code promo",
        "facture",
    ),
    "de": (
        "ruckerstattung",
        "erstattung",
        "geld zuruck",
        "retoure",
        "rucksend",
        "zurucksend",
        "zuruckschick",
        "stornier",
        "storno",
        "falsche grosse",
        "zu klein",
        "zu gross",
        "umtausch",
        "beschadigt",
        "kaputt",
        "defekt",
        "falscher artikel",
        "widerruf",
        "gutschein",
        "rechnung",
    ),
}


def _words(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Small common words: the language guess.
STOPWORDS: dict[str, frozenset[str]] = {
    "en": _words(
        "the my is i you and where have has not it to of please thanks thank hi hello when "
        "will was order haven t received yet still"
    ),
    "es": _words(
        "el la mi es que de y pedido no hola gracias por favor donde todavia esta aun "
        "cuando he ha recibido llegado un una"
    ),
    "fr": _words(
        "le la mon ma est je de et pas bonjour merci commande ou vous une un toujours "
        "quand recu n ai il elle"
    ),
    "de": _words(
        "der die das mein meine ist ich und nicht hallo danke bestellung wo noch mit sie "
        "wann habe erhalten bitte immer"
    ),
}

_NOT_WORD = re.compile(r"[^a-z0-9]+")


def normalise(text: str) -> str:
    """Lower case, accents dropped, ß -> ss, punctuation runs -> one space; padded with one
    space on each side, so a phrase is found at a word start as `" " + phrase`."""
    folded = unicodedata.normalize("NFKD", text.casefold().replace("ß", "ss"))
    plain = "".join(c for c in folded if not unicodedata.combining(c))
    return f" {_NOT_WORD.sub(' ', plain).strip()} "


def _matches(text: str, table: dict[str, tuple[str, ...]]) -> list[tuple[str, str]]:
    """(language, phrase) of every table phrase found at a word start, table order; a phrase
    inside a longer one that matched too ("nicht erhalten" in "noch nicht erhalten") counts
    only as that one."""
    found = [
        (language, phrase)
        for language, phrases in table.items()
        for phrase in phrases
        if f" {phrase}" in text
    ]
    return [
        (language, phrase)
        for language, phrase in found
        if not any(other != phrase and f" {phrase}" in f" {other}" for _, other in found)
    ]


def guess_language(text: str, matched: Sequence[tuple[str, str]] = ()) -> Language:
    """The language with the most common words and matched phrases; "unknown" on a tie."""
    words = text.split()
    scores: dict[str, int] = {
        lang: sum(1 for w in words if w in STOPWORDS[lang]) for lang in LANGUAGES
    }
    for language, _phrase in matched:
        scores[language] += 3
    ranked = sorted(LANGUAGES, key=lambda lang: -scores[lang])
    best, runner_up = ranked[0], ranked[1]
    if scores[best] == 0 or scores[best] == scores[runner_up]:
        return "unknown"
    return best


def classify(subject: str | None, body: str | None) -> TicketIntent:
    """WISMO or not, by the rules in this module's docstring."""
    text = normalise(f"{subject or ''} \n {body or ''}")
    strong = _matches(text, WISMO_STRONG)
    weak = _matches(text, WISMO_WEAK)
    negative = _matches(text, NEGATIVES)
    wismo_score = STRONG * len(strong) + WEAK * len(weak)
    negative_score = NEGATIVE * len(negative)
    language = guess_language(text, [*strong, *weak, *negative])
    if wismo_score >= WISMO_THRESHOLD and wismo_score > negative_score:
        decisive = (strong or weak)[0]
        return TicketIntent(
            intent=Intent.WISMO,
            language=language,
            rule=f"{decisive[0]}:wismo:{decisive[1]}",
            wismo_score=wismo_score,
            negative_score=negative_score,
        )
    rule = f"{negative[0][0]}:negative:{negative[0][1]}" if negative else "none"
    return TicketIntent(
        intent=Intent.OTHER,
        language=language,
        rule=rule,
        wismo_score=wismo_score,
        negative_score=negative_score,
    )
