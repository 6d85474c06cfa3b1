"""The ticket intent rules (trackflow.intent) on a table of real-looking tickets."""

from __future__ import annotations

import pytest

from trackflow.intent import Intent, classify, normalise

W, N = Intent.WISMO, Intent.OTHER  # N: not WISMO

# (subject, body, expected intent, expected language)
TICKETS: list[tuple[str, str, Intent, str]] = [
    # --- English ---------------------------------------------------------------------------
    ("Where is my order?", "Hi, I ordered 10 days ago and still nothing. Order #1001.", W, "en"),
    ("Order #1042", "Where's my package? The tracking hasn't updated since Monday.", W, "en"),
    ("", "I haven't received my order yet, can you check please? Thanks, Ada", W, "en"),
    ("Tracking number", "Hello, could you send me the tracking number for my order?", W, "en"),
    ("Late delivery", "When will my order arrive? It was supposed to be here Friday.", W, "en"),
    ("Not delivered", "It says delivered but I didn't get anything at my door.", W, "en"),
    ("Update?", "Any update on my order? It's been in transit for a week.", W, "en"),
    (
        "Where is my order",
        "Where is my order?? If it isn't here by Friday I want a refund. The tracking "
        "shows no movement and the carrier says nothing.",
        W,
        "en",
    ),
    ("Refund request", "I'd like a refund for order 1001, the jacket is too small.", N, "en"),
    ("Return", "How do I return the shoes? They are the wrong size.", N, "en"),
    ("Cancel order", "Please cancel my order before it ships, I ordered twice.", N, "en"),
    ("Where is my refund?", "I sent the package back two weeks ago, where is my refund?", N, "en"),
    ("Damaged item", "The mug arrived broken. Can I get a replacement?", N, "en"),
    ("Discount", "Hi, my discount code SAVE10 did not work at checkout.", N, "en"),
    ("Question", "Do you ship to Canada? What sizes does the blue hoodie come in?", N, "en"),
    # --- Spanish ---------------------------------------------------------------------------
    ("¿Dónde está mi pedido?", "Hola, hice el pedido hace dos semanas y no ha llegado.", W, "es"),
    ("Pedido 1001", "Todavía no he recibido mi paquete. ¿Me pueden ayudar?", W, "es"),
    ("Seguimiento", "¿Me pueden dar el número de seguimiento de mi pedido? Gracias", W, "es"),
    ("Envío", "¿Cuándo llegará mi pedido? El seguimiento no se actualiza.", W, "es"),
    ("Estado", "Quisiera saber el estado de mi pedido, por favor.", W, "es"),
    ("Devolución", "Quiero hacer una devolución, la talla es incorrecta.", N, "es"),
    ("Reembolso", "¿Cuándo recibiré el reembolso? Ya devolví el producto.", N, "es"),
    ("Cancelar pedido", "Por favor cancelar mi pedido, me equivoqué de color.", N, "es"),
    ("Producto dañado", "El producto llegó roto, quiero que me devuelvan mi dinero.", N, "es"),
    ("Tallas", "Hola, ¿tienen esta camiseta en talla M? Gracias", N, "es"),
    # --- French ----------------------------------------------------------------------------
    ("Où est ma commande ?", "Bonjour, j'ai commandé il y a 10 jours, rien reçu.", W, "fr"),
    ("Colis", "Je n'ai toujours pas reçu mon colis, pouvez-vous vérifier ? Merci", W, "fr"),
    ("Suivi", "Bonjour, quel est le numéro de suivi de ma commande ?", W, "fr"),
    ("Livraison", "Quand vais-je recevoir ma commande ? Le suivi ne bouge plus.", W, "fr"),
    ("Retard", "Ma commande est en retard, elle n'est toujours pas arrivée.", W, "fr"),
    ("Remboursement", "Je souhaite être remboursée, l'article est trop petit.", N, "fr"),
    ("Retour", "Comment faire un retour ? Mauvaise taille.", N, "fr"),
    ("Annulation", "Merci d'annuler ma commande, je me suis trompé.", N, "fr"),
    ("Article cassé", "Le vase est arrivé cassé, je voudrais un échange.", N, "fr"),
    ("Question", "Bonjour, est-ce que ce pull existe en bleu ? Merci", N, "fr"),
    # --- German ----------------------------------------------------------------------------
    ("Wo ist meine Bestellung?", "Hallo, ich habe vor einer Woche bestellt. Danke", W, "de"),
    ("Paket", "Mein Paket ist noch nicht angekommen. Können Sie nachsehen?", W, "de"),
    (
        "Sendungsverfolgung",
        "Ich habe keine Sendungsnummer bekommen. Wo bleibt mein Paket?",
        W,
        "de",
    ),
    ("Lieferung", "Wann kommt meine Bestellung? Die Lieferung ist verspätet.", W, "de"),
    ("Status", "Bitte um Info zum Status meiner Bestellung, ich warte immer noch.", W, "de"),
    ("Rückerstattung", "Ich habe die Rückerstattung noch nicht erhalten.", N, "de"),
    ("Rücksendung", "Wie kann ich den Artikel zurücksenden? Falsche Größe.", N, "de"),
    ("Stornierung", "Bitte stornieren Sie meine Bestellung.", N, "de"),
    ("Defekt", "Der Artikel ist kaputt angekommen, ich möchte einen Umtausch.", N, "de"),
    ("Frage", "Hallo, gibt es die Jacke auch in Größe L? Danke", N, "de"),
]


def test_the_table_is_broad() -> None:
    assert len(TICKETS) >= 40
    for language in ("en", "es", "fr", "de"):
        outcomes = {intent for _s, _b, intent, lang in TICKETS if lang == language}
        assert outcomes == {W, N}, language


@pytest.mark.parametrize(("subject", "body", "intent", "language"), TICKETS)
def test_ticket_intent(subject: str, body: str, intent: Intent, language: str) -> None:
    result = classify(subject, body)
    assert (result.intent, result.language) == (intent, language), result
    kind = "wismo" if intent == W else "negative"
    if intent == W or result.rule != "none":
        assert f":{kind}:" in result.rule, result


def test_normalise_folds_case_accents_and_punctuation() -> None:
    assert normalise("Où est   ma COMMANDE ?!") == " ou est ma commande "
    assert normalise("Größe, Rückerstattung") == " grosse ruckerstattung "
    assert normalise("¿Dónde está?") == " donde esta "
    assert normalise("where's") == " where s "


def test_negatives_win_a_tie() -> None:
    result = classify("Where is my order", "Please cancel it.")
    assert result.intent == N
    assert result.rule == "en:negative:cancel"
    assert result.wismo_score == result.negative_score


def test_weak_words_alone_need_three() -> None:
    assert classify("", "Shipping question").intent == N
    assert classify("", "shipping, tracking and delivery").intent == W


def test_an_empty_ticket_is_other_and_unknown() -> None:
    result = classify(None, None)
    assert (result.intent, result.language, result.rule) == (N, "unknown", "none")
