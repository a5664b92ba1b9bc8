"""Support words in Spanish, German and French, with the English words a help center uses for them.

A question in a language the help center has no answer in is searched in English too: its content
words are looked up here (by stem, so "devoluciones" and "devolver" both find "return") and the
English words searched instead. Other words are left out (an English article would not hold them),
numbers and codes kept. A glossary, not a translator: it knows the vocabulary of shop support only.
"""

from __future__ import annotations

import functools

from storage.analysis import analyzer

# (English words, Spanish words, German words, French words)
ENTRIES: tuple[tuple[str, str, str, str], ...] = (
    ("return returns", "devolución devoluciones devolver devuelvo retorno", "rückgabe rücksendung zurückgeben "
     "zurückschicken zurücksenden rückgabefrist", "retour retours retourner renvoyer"),
    ("refund refunds", "reembolso reembolsos reembolsar", "erstattung rückerstattung erstatten", "remboursement "
     "remboursements rembourser"),
    ("shipping ship", "envío envíos enviar", "versand versenden versandkosten verschicken", "expédition expédier "
     "envoi"),
    ("delivery deliver", "entrega entregar llegar llega tarda", "lieferung liefern lieferzeit zustellung dauert",
     "livraison livrer"),
    ("cost free", "coste costo cuesta gratis gratuito gastos", "kosten kostet kostenlos gratis", "coût coûte frais "
     "gratuit gratuite"),
    ("price", "precio precios", "preis preise preisänderung", "prix"),
    ("order orders", "pedido pedidos compra", "bestellung bestellungen", "commande commandes"),
    ("cancel", "cancelar anular", "stornieren stornierung", "annuler annulation"),
    ("change", "cambiar modificar cambio", "ändern änderung", "modifier changer changement"),
    ("address", "dirección", "adresse anschrift", "adresse"),
    ("warranty guarantee", "garantía", "garantie gewährleistung", "garantie"),
    ("damaged broken defective", "dañado dañada roto rota defectuoso defectuosa", "beschädigt kaputt defekt",
     "endommagé endommagée cassé cassée défectueux défectueuse abîmé"),
    ("missing", "falta faltante", "fehlt fehlend fehlende", "manquant manquante manque"),
    ("tracking track", "seguimiento rastrear rastreo", "sendungsverfolgung verfolgen verfolgung", "suivi suivre"),
    ("hours opening open", "horario horarios abierto abren atención", "öffnungszeiten geöffnet erreichbar",
     "horaires ouvert ouverture"),
    ("gift wrap wrapping", "regalo envolver envoltorio", "geschenk geschenkverpackung verpacken", "cadeau emballage "
     "emballer"),
    ("payment pay card", "pago pagar tarjeta", "zahlung bezahlen karte zahlungsmethoden zahlungsarten", "paiement "
     "payer carte"),
    ("promo code discount coupon", "cupón descuento código", "gutschein rabatt gutscheincode", "promo réduction "
     "coupon code"),
    ("invoice receipt", "factura recibo", "rechnung quittung", "facture reçu"),
    ("account password login", "cuenta contraseña", "konto passwort anmelden", "compte passe connexion"),
    ("privacy data", "privacidad datos", "datenschutz daten", "confidentialité données"),
    ("international abroad country", "internacional extranjero país", "international ausland", "international "
     "étranger pays"),
    ("exchange swap", "canjear intercambio", "umtausch umtauschen", "échange échanger"),
    ("care clean cleaning", "cuidado limpiar limpieza", "pflege reinigen reinigung", "entretien nettoyer nettoyage"),
    ("days", "días", "tage tagen", "jours"),
    ("window deadline", "plazo", "frist", "délai"),
    ("item items product", "artículo artículos producto", "artikel produkt", "article articles produit"),
    ("time long", "tiempo", "zeit dauer", "temps"),
)  # fmt: skip
LANGUAGES = ("es", "de", "fr")


@functools.cache
def _table(language: str) -> dict[str, str]:
    """A language's stems -> the English words for them."""
    column = LANGUAGES.index(language) + 1
    out: dict[str, str] = {}
    for entry in ENTRIES:
        for stem in analyzer(language).terms(entry[column]):
            out.setdefault(stem, entry[0])
    return out


def to_english(query: str, language: str) -> str:
    """The English words of a question written in `language` (the question itself for English or a
    language the glossary does not know)."""
    if language not in LANGUAGES:
        return query
    table = _table(language)
    terms = analyzer(language).terms(query)
    words = [table.get(t) or (t if any(ch.isdigit() for ch in t) else "") for t in terms]
    return " ".join(dict.fromkeys(w for w in words if w)) or query  # nothing it knows: perhaps English already
