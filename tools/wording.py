"""Every sentence supportbot says to a customer on its own (not written by the model).

One module, so tone and safety are reviewed in one place. Nothing here names an internal code,
a limit's amount, or anything of another customer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from storage.states import OrderChangeStatus, OrderStatus, RefundStatus
from storage.types import format_cents
from tools.codes import Code

if TYPE_CHECKING:
    from storage.models import PaymentMethod

Face = Literal["slack", "shell", "web", "mcp"]

NOT_FOUND_ORDER = "I couldn't find that order on your account. Could you double-check the order number?"
CONFIRMATION_EXPIRED = (
    "That confirmation has expired, so no money has moved. Just ask again if you'd still like the refund."
)
CANCEL_EXPIRED = "That confirmation had already expired, so nothing was refunded and there's nothing to cancel."

TOO_MANY_UNKNOWN_ORDERS = (
    "I can't look up any more order numbers for you right now. Please check the number on your "
    "order confirmation email and try again in an hour, or ask me for a member of our team."
)

BY_CODE: dict[Code, str] = {
    Code.INVALID_INPUT: "Sorry, I didn't quite catch that. Could you rephrase it?",
    Code.IDENTITY_UNVERIFIED: (
        "I can't look into account details until we've confirmed who you are. A member of our team will help with that."
    ),
    Code.IDENTITY_MISMATCH: (
        "That email doesn't match the account you're signed in with, so I've asked a member of our team to help."
    ),
    Code.ORDER_NOT_FOUND: NOT_FOUND_ORDER,
    Code.OWNERSHIP_MISMATCH: NOT_FOUND_ORDER,  # exactly the unknown-order wording, on purpose
    Code.ORDER_NOT_LOOKED_UP: "Let me pull up that order first.",
    Code.TOO_MANY_UNKNOWN_ORDERS: TOO_MANY_UNKNOWN_ORDERS,
    Code.NOT_ELIGIBLE: "That order isn't eligible for a refund under our return policy.",
    Code.INVALID_AMOUNT: "That amount doesn't match what can be refunded for this order.",
    Code.LIMIT_EXCEEDED: (
        "This refund needs a quick review by a member of our team. I've passed it on, and they'll follow up here."
    ),
    Code.NOT_ALLOWED: "Sorry, that isn't something I can do from here.",
    Code.NOT_FOUND: "I couldn't find that.",
    Code.INVALID_STATE: "That request has already been handled.",
    Code.EXPIRED: CONFIRMATION_EXPIRED,
    Code.PAYMENT_FAILED: (
        "Something went wrong sending your refund, and no money has moved. A member of our team will sort it out."
    ),
    Code.CHANGE_APPLIED: "Done: the change has been made.",
    Code.ALREADY_RETURNED: "That item has already been returned, exchanged or refunded, so it can't be again.",
    Code.ITEM_NOT_IN_ORDER: "I couldn't find that item in the order. Could you tell me which item you mean?",
    Code.VARIANT_UNAVAILABLE: "That option isn't available for this product right now, so I can't switch to it.",
    Code.PAYMENT_METHOD_NOT_FOUND: "I couldn't find that payment method on your account.",
    Code.METHOD_NOT_ALLOWED: (
        "A return can only be refunded to the original payment method or to one of your gift cards."
    ),
    Code.INSUFFICIENT_BALANCE: "That gift card's balance doesn't cover the amount, so I can't use it for this.",
}


def for_code(code: Code) -> str:
    return BY_CODE.get(code, GENERIC_FALLBACK)


GENERIC_FALLBACK = "Sorry, I ran into a problem there. A member of our support team will follow up with you."

ESCALATED_LEGAL = (
    "I'm sorry this has been such a frustrating experience. I've passed your message to a senior member of "
    "our support team as a priority, and they'll reply here as soon as possible."
)
ESCALATED_HUMAN = (
    "Of course. I've asked a member of our support team to join this conversation; they'll reply here shortly."
)
ESCALATED_HUMAN_ALSO = (
    "I've asked a member of our support team to join this conversation; they'll reply here. Meanwhile, here's "
    "what I can do:"
)
ESCALATED_SAFETY = (
    "I'm so sorry, and I'm glad you told us. Please stop using the product and keep it unplugged and away from "
    "anyone. If anyone was hurt, please get medical help first. I've passed this to a senior member of our support "
    "team as a priority, and they'll reply here as soon as possible."
)
ESCALATED_BILLING = (
    "I'm sorry about the trouble with the charge. Payments need a person's eyes, so I've asked a member of our "
    "support team to check what was charged; they'll reply here."
)
ESCALATED_NOT_RECEIVED = (
    "I'm sorry your order hasn't reached you. I've asked a member of our support team to look into the delivery "
    "with the carrier; they'll reply here."
)
# what the history records for a turn whose message was the Confirm step alone (for the model's next turn)
CONFIRM_STEP_SHOWN = "(The customer was shown the Confirm step for the refund above.)"
ESCALATED_GENERIC = "I've passed this to a member of our support team, and they'll follow up here."
MODEL_OUTAGE = (
    "I'm sorry, I'm having trouble answering right now. I've passed your message to a member of our support "
    "team, and they'll reply here."
)
TICKET_LIMIT = (
    "I'm sorry, I can't pass this to our team from here right now: we've had several requests from your "
    "connection in the last hour. Please try again a little later, or sign in so we can help you with your account."
)
TURN_LIMIT = "I'm sorry, I wasn't able to sort this out myself. I've asked a member of our support team to take a look."
DEAD_LETTER = (
    "I'm sorry, something went wrong on our side while answering your message. "
    "A member of our support team has been alerted and will reply here."
)
UNVERIFIED_ACCOUNT = (
    "I can answer general questions, but I can't access account or order details until we've linked this "
    "conversation to your customer account. I've asked a member of our team to do that."
)
NOT_YOUR_THREAD = (
    "This thread belongs to another customer's conversation, so I can't share anything here. "
    "Please start a new message in the channel and I'll help you there."
)
STAFF_JOINED = "A member of our support team has joined this conversation and will take it from here."
HANDED_BACK = "Our support team has wrapped up here. I'm back if you need anything else."


def method_label(method: PaymentMethod | None) -> str:
    """How a payment method is named to its customer: "Visa card ending 4242", "PayPal", "gift card
    gift-1"; None is the order's original method, which an older import did not record."""
    if method is None:
        return "your original payment method"
    if method.kind == "credit_card":
        brand = (method.brand or "").strip()
        card = f"{brand.title()} card" if brand else "card"
        return f"{card} ending {method.last_four}" if method.last_four else card
    if method.kind == "paypal":
        return "PayPal"
    return f"gift card {method.id}"


def refund_confirm_prompt(*, order_id: str, item: str, amount: str) -> str:
    return f"I can refund {amount} for {item} (order {order_id}). Shall I go ahead?"


# How each face asks for the confirmation step: Slack and the website have buttons, the shell
# has a keyboard, an MCP client shows the question we send it. The model's own reply never says
# how to confirm (the prompt tells it so); the face adds this.
CONFIRM_HOW: dict[Face, str] = {
    "slack": "Press Confirm refund below to send it, or Cancel (replying yes or no here works too).",
    "shell": "Reply yes to send it, or no to cancel.",
    "web": "Use the Confirm button to send it, or Cancel.",
    "mcp": 'Tick "Yes, go ahead" and accept to send it, or decline to cancel.',
}


def confirm_how(face: Face) -> str:
    return CONFIRM_HOW[face]


def confirm_again(*, order_id: str, amount: str) -> str:
    """An answer that is not a clear yes or no while money waits: nothing moves, and we ask again."""
    return (
        f"Just to be sure: shall I send the refund of {amount} for order {order_id}? "
        "Please reply yes to send it, or no to cancel."
    )


def refund_done(*, order_id: str, amount: str) -> str:
    return (
        f"Done: your refund of {amount} for order {order_id} has been issued. It can take 3–5 business days to appear."
    )


def refund_cancelled(*, order_id: str) -> str:
    return f"No problem, I haven't refunded order {order_id}. Let me know if you change your mind."


def refund_denied(*, order_id: str) -> str:
    return (
        f"Our team has reviewed the refund request for order {order_id} and wasn't able to approve it. "
        "They'll follow up here with the details."
    )


REFUND_STATES = {
    "en": {
        RefundStatus.AWAITING_CONFIRMATION: "waiting for your confirmation",
        RefundStatus.PENDING_APPROVAL: "being reviewed by our team",
        RefundStatus.PROCESSING: "being processed",
        RefundStatus.PROCESSED: "issued",
        RefundStatus.FAILED: "delayed, and our team is on it",
        RefundStatus.CANCELLED: "cancelled",
        RefundStatus.EXPIRED: "expired before it was confirmed",
        RefundStatus.DENIED: "not approved",
        "other": "in progress",
    },
    "es": {
        RefundStatus.AWAITING_CONFIRMATION: "a la espera de su confirmación",
        RefundStatus.PENDING_APPROVAL: "en revisión por nuestro equipo",
        RefundStatus.PROCESSING: "en proceso",
        RefundStatus.PROCESSED: "emitido",
        RefundStatus.FAILED: "retrasado, y nuestro equipo se está ocupando",
        RefundStatus.CANCELLED: "cancelado",
        RefundStatus.EXPIRED: "caducado antes de confirmarse",
        RefundStatus.DENIED: "no aprobado",
        "other": "en curso",
    },
    "de": {
        RefundStatus.AWAITING_CONFIRMATION: "wartet auf Ihre Bestätigung",
        RefundStatus.PENDING_APPROVAL: "wird von unserem Team geprüft",
        RefundStatus.PROCESSING: "wird bearbeitet",
        RefundStatus.PROCESSED: "ist ausgezahlt",
        RefundStatus.FAILED: "verzögert sich, unser Team kümmert sich darum",
        RefundStatus.CANCELLED: "wurde storniert",
        RefundStatus.EXPIRED: "ist abgelaufen, bevor sie bestätigt wurde",
        RefundStatus.DENIED: "wurde nicht genehmigt",
        "other": "ist in Bearbeitung",
    },
    "fr": {
        RefundStatus.AWAITING_CONFIRMATION: "en attente de votre confirmation",
        RefundStatus.PENDING_APPROVAL: "en cours d'examen par notre équipe",
        RefundStatus.PROCESSING: "en cours de traitement",
        RefundStatus.PROCESSED: "émis",
        RefundStatus.FAILED: "retardé, et notre équipe s'en occupe",
        RefundStatus.CANCELLED: "annulé",
        RefundStatus.EXPIRED: "expiré avant d'être confirmé",
        RefundStatus.DENIED: "refusé",
        "other": "en cours",
    },
}
_REFUND_LINE = {
    "en": "Order {order_id} ({item}): refund of {amount} is {state}.",
    "es": "Pedido {order_id} ({item}): el reembolso de {amount} está {state}.",
    "de": "Bestellung {order_id} ({item}): die Erstattung von {amount} {state}.",
    "fr": "Commande {order_id} ({item}) : le remboursement de {amount} est {state}.",
}


def _lang(language: str) -> str:
    return language if language in REFUND_STATES else "en"


def refund_status_line(*, order_id: str, item: str, amount: str, status: str, language: str = "en") -> str:
    lang = _lang(language)
    states = REFUND_STATES[lang]
    state = states.get(status, states["other"])
    return _REFUND_LINE[lang].format(order_id=order_id, item=item, amount=amount, state=state)


NO_REFUNDS = "I couldn't find any refunds on your account."


# --- what the claims check says instead of a reply the store contradicts (agent.claims) ------------------
CORRECTION_LEAD = "Here's exactly where things stand:"
TOOL_TEXT_LEAD = "Sorry, my answer didn't come out right."
ASK_AGAIN = "Could you tell me once more what you need?"
HANDOFF_OPEN = "A member of our support team has been asked to help and will reply here."
NO_HANDOFF = (
    "I haven't passed this conversation to a person yet; just say so if you'd like someone from our team to help."
)
NO_CALLS = "Our team answers here in this conversation; we don't phone or email customers."
NO_REFUND_HERE = "I haven't made any refund in this conversation."
CORRECTION: dict[str, dict[str, str]] = {  # the order statuses' words under their members
    "en": {
        "lead": CORRECTION_LEAD,
        "tool_text_lead": TOOL_TEXT_LEAD,
        "ask_again": ASK_AGAIN,
        "handoff_open": HANDOFF_OPEN,
        "no_handoff": NO_HANDOFF,
        "no_calls": NO_CALLS,
        "no_refund_here": NO_REFUND_HERE,
        "not_found": NOT_FOUND_ORDER,
        "no_refund_on": "There is no refund on order {order_id} so far.",
        OrderStatus.DELIVERED: "was delivered on {delivered_on}",
        OrderStatus.SHIPPED: "has shipped and is on its way",
        OrderStatus.PROCESSED: "has been processed for shipping",
        OrderStatus.PENDING: "hasn't shipped yet",
        OrderStatus.ITEMS_MODIFIED: "hasn't shipped yet (its items were changed)",
        OrderStatus.CANCELLED: "was cancelled",
        OrderStatus.RETURN_REQUESTED: "was delivered on {delivered_on}, and a return has been requested",
        OrderStatus.EXCHANGE_REQUESTED: "was delivered on {delivered_on}, and an exchange has been requested",
        "other": "is being handled",
        "order": "Order {order_id} ({item}, {total}) {where}.",
        "and": "and",
    },
    "es": {
        "lead": "Esto es exactamente lo que consta:",
        "tool_text_lead": "Perdone, mi respuesta no ha salido bien.",
        "ask_again": "¿Podría decirme otra vez qué necesita?",
        "handoff_open": "Hemos pedido ayuda a un miembro de nuestro equipo, que le responderá aquí.",
        "no_handoff": (
            "Todavía no he pasado esta conversación a una persona; dígamelo si quiere que le ayude alguien "
            "de nuestro equipo."
        ),
        "no_calls": (
            "Nuestro equipo responde aquí, en esta conversación; no llamamos ni enviamos correos a los clientes."
        ),
        "no_refund_here": "No he hecho ningún reembolso en esta conversación.",
        "not_found": "No he encontrado ese pedido en su cuenta. ¿Podría comprobar el número de pedido?",
        "no_refund_on": "El pedido {order_id} no tiene ningún reembolso por ahora.",
        OrderStatus.DELIVERED: "se entregó el {delivered_on}",
        OrderStatus.SHIPPED: "se ha enviado y está en camino",
        OrderStatus.PENDING: "todavía no se ha enviado",
        OrderStatus.CANCELLED: "se canceló",
        OrderStatus.PROCESSED: "se ha preparado para el envío",
        OrderStatus.ITEMS_MODIFIED: "todavía no se ha enviado (se cambiaron sus artículos)",
        OrderStatus.RETURN_REQUESTED: "se entregó el {delivered_on} y se ha solicitado una devolución",
        OrderStatus.EXCHANGE_REQUESTED: "se entregó el {delivered_on} y se ha solicitado un cambio",
        "other": "se está tramitando",
        "order": "El pedido {order_id} ({item}, {total}) {where}.",
        "and": "y",
    },
    "de": {
        "lead": "So ist der genaue Stand:",
        "tool_text_lead": "Entschuldigung, meine Antwort ist nicht richtig herausgekommen.",
        "ask_again": "Könnten Sie mir noch einmal sagen, was Sie brauchen?",
        "handoff_open": "Ein Mitglied unseres Teams wurde um Hilfe gebeten und antwortet Ihnen hier.",
        "no_handoff": (
            "Ich habe dieses Gespräch noch nicht an eine Person übergeben; sagen Sie einfach Bescheid, wenn "
            "Ihnen jemand aus unserem Team helfen soll."
        ),
        "no_calls": "Unser Team antwortet hier im Gespräch; wir rufen Kunden nicht an und schreiben keine E-Mails.",
        "no_refund_here": "Ich habe in diesem Gespräch keine Erstattung veranlasst.",
        "not_found": "Diese Bestellung habe ich in Ihrem Konto nicht gefunden. Könnten Sie die Bestellnummer prüfen?",
        "no_refund_on": "Für die Bestellung {order_id} gibt es bisher keine Erstattung.",
        OrderStatus.DELIVERED: "wurde am {delivered_on} zugestellt",
        OrderStatus.SHIPPED: "ist versandt und unterwegs",
        OrderStatus.PENDING: "ist noch nicht versandt",
        OrderStatus.CANCELLED: "wurde storniert",
        OrderStatus.PROCESSED: "ist für den Versand vorbereitet",
        OrderStatus.ITEMS_MODIFIED: "ist noch nicht versandt (die Artikel wurden geändert)",
        OrderStatus.RETURN_REQUESTED: "wurde am {delivered_on} zugestellt, eine Rücksendung ist angefragt",
        OrderStatus.EXCHANGE_REQUESTED: "wurde am {delivered_on} zugestellt, ein Umtausch ist angefragt",
        "other": "wird bearbeitet",
        "order": "Die Bestellung {order_id} ({item}, {total}) {where}.",
        "and": "und",
    },
    "fr": {
        "lead": "Voici exactement où en sont les choses :",
        "tool_text_lead": "Désolé, ma réponse n'est pas sortie correctement.",
        "ask_again": "Pourriez-vous me redire ce dont vous avez besoin ?",
        "handoff_open": "Un membre de notre équipe a été sollicité et vous répondra ici.",
        "no_handoff": (
            "Je n'ai pas encore transmis cette conversation à une personne ; dites-le-moi si vous souhaitez "
            "l'aide de notre équipe."
        ),
        "no_calls": (
            "Notre équipe répond ici, dans cette conversation ; nous n'appelons pas et n'envoyons pas d'e-mails."
        ),
        "no_refund_here": "Je n'ai effectué aucun remboursement dans cette conversation.",
        "not_found": (
            "Je n'ai pas trouvé cette commande sur votre compte. Pourriez-vous vérifier le numéro de commande ?"
        ),
        "no_refund_on": "La commande {order_id} n'a aucun remboursement pour l'instant.",
        OrderStatus.DELIVERED: "a été livrée le {delivered_on}",
        OrderStatus.SHIPPED: "a été expédiée et est en route",
        OrderStatus.PENDING: "n'a pas encore été expédiée",
        OrderStatus.CANCELLED: "a été annulée",
        OrderStatus.PROCESSED: "a été préparée pour l'expédition",
        OrderStatus.ITEMS_MODIFIED: "n'a pas encore été expédiée (ses articles ont été modifiés)",
        OrderStatus.RETURN_REQUESTED: "a été livrée le {delivered_on}, et un retour a été demandé",
        OrderStatus.EXCHANGE_REQUESTED: "a été livrée le {delivered_on}, et un échange a été demandé",
        "other": "est en cours de traitement",
        "order": "Commande {order_id} ({item}, {total}) {where}.",
        "and": "et",
    },
}


def correction(language: str) -> dict[str, str]:
    return CORRECTION.get(language, CORRECTION["en"])


def no_refund_on(*, order_id: str, language: str = "en") -> str:
    return correction(language)["no_refund_on"].format(order_id=order_id)


def items_list(items: list[tuple[str, int]], *, language: str = "en", limit: int = 20) -> str:
    """Every item of an order: "ProBlend 500 blender", "2 × Mug and Kettle", "A, B and C"."""
    names = [f"{q} × {name}" if q > 1 else name for name, q in items[:limit]]
    if len(items) > limit:
        names.append(f"+{len(items) - limit}")
    if not names:
        return "your order"
    if len(names) == 1:
        return names[0]
    return f"{', '.join(names[:-1])} {correction(language)['and']} {names[-1]}"


def order_line(
    *, order_id: str, item: str, total: str, status: str, delivered_on: str | None, language: str = "en"
) -> str:
    """One order as the store has it: number, its items, total, and where it is."""
    say = correction(language)
    where = say[status] if status in set(OrderStatus) and status in say else say["other"]
    return say["order"].format(order_id=order_id, item=item, total=total, where=where.format(delivered_on=delivered_on))


def after_confirmation(code: Code, *, order_id: str, amount: str) -> str:
    """What the customer is told after pressing Confirm (or Cancel), by the state machine's answer."""
    if code is Code.REFUND_PROCESSED:
        return refund_done(order_id=order_id, amount=amount)
    if code is Code.OK:
        return f"Your refund of {amount} for order {order_id} is being processed."
    if code is Code.INVALID_STATE:
        return "That refund has already been handled, so nothing has changed."
    if code is Code.NOT_ALLOWED:
        return "Only the customer who asked for this refund can confirm it."
    return for_code(code)


def after_cancel(code: Code, *, order_id: str) -> str:
    if code is Code.OK:
        return refund_cancelled(order_id=order_id)
    if code is Code.EXPIRED:
        return CANCEL_EXPIRED
    return after_confirmation(code, order_id=order_id, amount="")


def refund_status_text(code: Code, refunds: list[dict[str, str]]) -> str:
    """The /refund-status answer; another customer's order reads exactly like an unknown one."""
    if code in (Code.ORDER_NOT_FOUND, Code.OWNERSHIP_MISMATCH):
        return NOT_FOUND_ORDER
    if code is not Code.OK:
        return for_code(code)
    if not refunds:
        return NO_REFUNDS
    return "\n".join(
        refund_status_line(order_id=r["order_id"], item=r["item"], amount=r["amount"], status=r["status"])
        for r in refunds
    )


def refund_processing(*, order_id: str, amount: str) -> str:
    return f"Your refund of {amount} for order {order_id} is being processed."


# --- said by the agent loop on its own ------------------------------------------------------------
MODEL_REFUSAL = "Sorry, that's not something I can help with here. Is there anything else about your order I can do?"
TRUNCATED = "Sorry, I lost my train of thought there. Could you say that again?"
# what the model is told (and may pass on) when a tool kept failing
TOOL_UNAVAILABLE_NOTE = "This system is unavailable right now. A person has been asked to help; tell the customer so."

# --- staff replies and notices, as the customer sees them --------------------------------------
STAFF_REPLY_PREFIX = "(A member of our support team wrote) "
STAFF_REPLY_LABEL = "Support team"

# --- MCP clients (their own model reads these and may pass them on) ------------------------------
MCP_NOT_ASKED = (
    "The refund is prepared but not sent: only the customer can confirm it, and this client cannot ask them, so it "
    "will expire unconfirmed. Do not say it has been refunded."
)
NOT_APPROVED = (
    "Not approved: approving needs your own confirmation at the client, and it was not given. Nothing changed."
)
MCP_DECLINED = "The customer did not confirm, so the refund was cancelled and no money moved."
MCP_FAILED = "That did not work because of a problem on our side. Try again shortly, or use escalate_to_human."

# --- said to a person who pressed something (staff, colleagues, other customers) -------------------
ONLY_THE_CUSTOMER = "Only the customer who asked for this refund can confirm or cancel it."
NOT_STAFF = "Only members of the support team can do that."
TICKET_GONE = "That ticket no longer exists."
STALE_FORM = "This form is stale; press the button again."
NO_SUCH_CUSTOMER = "No customer has that email or id."
NO_IDENTITY_TO_LINK = "That ticket has no customer identity to link."


def article_saved(note: str, *, article_id: int) -> str:
    return (
        f"{note} Customers find it once it is published: `supportbot kb show {article_id}`, "
        f"then `supportbot kb publish {article_id}`."
    )


def nothing_saved(note: str) -> str:
    return f"Nothing saved: {note}"


def already_claimed(by: str) -> str:
    return f"Already claimed by {by}."


def nothing_changed(status: str) -> str:
    return f"Nothing changed: the ticket is {status}."


def dead_letter_alert(*, item_id: int, attempts: int) -> str:
    return (
        f"⚠️ A customer message could not be answered after {attempts} attempts (inbox item {item_id}). "
        f"Replay it with `supportbot inbox retry {item_id}` once the cause is fixed."
    )


def relay(text: str) -> str:
    """A handed-off web/shell/MCP customer's message, as staff read it in the ticket's thread."""
    return f"💬 The customer wrote: {text}"


def staff_refund_status_text(code: Code, refunds: list[dict[str, str]], *, order_id: str | None) -> str:
    """/refund-status for staff, who may look up any order: an unknown order is just unknown."""
    order_id = (order_id or "").strip().upper()[:32]
    if code is Code.ORDER_NOT_FOUND:
        return f"No such order: {order_id}." if order_id else "No such order."
    if code is not Code.OK:
        return for_code(code)
    if not refunds:
        return f"No refunds for {order_id}." if order_id else "No refunds."
    return "\n".join(
        f"{r['order_id']} ({r['item']}): {r['amount']}, {r['status'].replace('_', ' ')}, refund {r['refund_id']}"
        for r in refunds
    )


# --- the help center (the offline model's answers; a real model writes its own) ---------------------
HELP_CENTER_QUOTE = {
    "en": "Here's what our help center says: \u201c{snippet}\u201d More in \u201c{title}\u201d: {url}",
    "es": "Esto dice nuestro centro de ayuda: \u00ab{snippet}\u00bb Más en \u00ab{title}\u00bb: {url}",
    "de": "Das steht in unserem Hilfe-Center: \u201e{snippet}\u201c Mehr unter \u201e{title}\u201c: {url}",
    "fr": "Voici ce que dit notre centre d'aide : \u00ab {snippet} \u00bb Plus dans \u00ab {title} \u00bb : {url}",
}
# one line before a quote in another language than the customer's: (their language, the article's)
HELP_CENTER_OTHER_LANGUAGE = {
    "en": "(This article is only available in {found}.)",
    "es": "(Este artículo solo está disponible en {found}.)",
    "de": "(Diesen Artikel gibt es nur auf {found}.)",
    "fr": "(Cet article n'existe qu'en {found}.)",
}
LANGUAGE_NAMES = {
    "en": {"en": "English", "es": "Spanish", "de": "German", "fr": "French"},
    "es": {"en": "inglés", "es": "español", "de": "alemán", "fr": "francés"},
    "de": {"en": "Englisch", "es": "Spanisch", "de": "Deutsch", "fr": "Französisch"},
    "fr": {"en": "anglais", "es": "espagnol", "de": "allemand", "fr": "français"},
}
HELP_CENTER_NONE = {
    "en": "I couldn't find an answer to that in our help center, and I'd rather not guess.",
    "es": "No he encontrado una respuesta a eso en nuestro centro de ayuda y prefiero no adivinar.",
    "de": "Dazu habe ich in unserem Hilfe-Center keine Antwort gefunden, und ich möchte nicht raten.",
    "fr": "Je n'ai pas trouvé de réponse à cela dans notre centre d'aide, et je préfère ne pas deviner.",
}
OFFER_PERSON = {
    "en": "Would you like me to ask a member of our team?",
    "es": "¿Quieres que se lo pregunte a alguien de nuestro equipo?",
    "de": "Soll ich jemanden aus unserem Team fragen?",
    "fr": "Voulez-vous que je demande à un membre de notre équipe ?",
}
NO_PERSON = "No problem. Is there anything else I can help with?"


def help_center_quote(*, language: str, snippet: str, title: str, url: str, asked: str | None = None) -> str:
    """A passage quoted; when the customer writes in another language, one line in theirs says so first."""
    quote = HELP_CENTER_QUOTE.get(language, HELP_CENTER_QUOTE["en"]).format(snippet=snippet, title=title, url=url)
    if asked is None or asked == language:
        return quote
    names = LANGUAGE_NAMES.get(asked, LANGUAGE_NAMES["en"])
    line = HELP_CENTER_OTHER_LANGUAGE.get(asked, HELP_CENTER_OTHER_LANGUAGE["en"])
    return f"{line.format(found=names.get(language, language))} {quote}"


def help_center_none(*, language: str, known: str = "") -> str:
    """No article answers: say so (with what the settings do state, if that is the question) and offer a person."""
    lead = HELP_CENTER_NONE.get(language, HELP_CENTER_NONE["en"])
    return " ".join(p for p in (lead, known, OFFER_PERSON.get(language, OFFER_PERSON["en"])) if p)


def offered_person(text: str) -> bool:
    return any(offer in text for offer in OFFER_PERSON.values())


def return_window_line(days: int) -> str:
    return f"What I can tell you is that a delivered order can be returned within {days} days of delivery."


# --- order changes: what the customer confirms, and what they are told afterwards -------------------
CHANGE_EXPIRED = "That confirmation has expired, so nothing has changed. Just ask again if you'd still like it."
CHANGE_CANCELLED = "No problem, I haven't changed anything."
CHANGE_HANDLED = "That request has already been handled, so nothing more has changed."
CHANGE_NOT_YOURS = "Only the customer who asked for this change can confirm or cancel it."
CHANGE_MOVED_ON = "The order changed in the meantime, so I haven't made this change. Let me check it again."
CHANGE_REVIEW = (
    "This change needs a quick review by a member of our team because of the refund involved. I've passed it on, "
    "and they'll follow up here."
)
CHANGE_NOT_ELIGIBLE = {
    "cancel": "That order can't be cancelled any more: only orders that haven't been processed or changed can be.",
    "modify_items": (
        "The items of that order can't be changed any more: only orders that haven't been processed can be, and "
        "only once."
    ),
    "modify_address": "The address of that order can't be changed any more: it has already been processed.",
    "modify_payment": "The payment of that order can't be changed any more.",
    "return": "That order can't be returned: only delivered orders within our return window can be.",
    "exchange": "That order can't be exchanged: only delivered orders within our return window can be.",
}


def _amount(m: dict[str, Any], currency: str | None) -> str:
    return format_cents(int(m["amount_cents"]), currency or "USD")


def _when(m: dict[str, Any]) -> str:
    if m["when"] == "on_return":
        return "once we receive the items"
    return "right away" if m.get("gift_card") else "within 5–7 business days"


def _money_lines(change: dict[str, Any], *, done: bool = False) -> list[str]:
    """Each amount, signed in words (refunded to, charged to) with its method and when."""
    out = []
    for m in change.get("money", []):
        if not m["amount_cents"]:
            continue
        amount = _amount(m, change.get("currency"))
        at_once = m["when"] == "now" and (m["kind"] == "payment" or m.get("gift_card"))
        verb = "refunded to" if m["kind"] == "refund" else "charged to"
        if done and at_once:
            out.append(f"{amount} has been {verb} {m['method']}.")
        else:
            when = "" if at_once and m["kind"] == "payment" else f" {_when(m)}"
            out.append(f"{amount} will be {verb} {m['method']}{when}.")
    return out


def _options(opts: dict[str, str] | None) -> str:
    return ", ".join(str(v) for v in (opts or {}).values())


def _address(a: dict[str, str] | None) -> str:
    a = a or {}
    first = ", ".join(x for x in (a.get("address1"), a.get("address2")) if x)
    region = " ".join(x for x in (a.get("state"), a.get("zip")) if x)
    return ", ".join(x for x in (first, a.get("city"), region, a.get("country")) if x)


def _swaps(change: dict[str, Any], word: str = "to") -> str:
    return "; ".join(
        f"{line['name']} ({_options(line['options'])}) {word} ({_options(line['new_options'])})"
        for line in change.get("lines", [])
    )


def change_confirm_prompt(change: dict[str, Any]) -> str:
    """The confirmation step for an order change (from `tools.order_changes.describe`): exactly what
    will change and the money, and where it goes."""
    kind, order = change["kind"], change.get("order_id")
    names = ", ".join(line["name"] for line in change.get("lines", []))
    lead: dict[str, Callable[[], str]] = {
        "cancel": lambda: f"I can cancel order {order} (reason: {change.get('reason')}).",
        "modify_items": lambda: f"I can change these items in order {order}: {_swaps(change)}.",
        "modify_address": lambda: (
            f"I can change the shipping address of order {order} to {_address(change.get('address'))}."
        ),
        "modify_payment": lambda: f"I can change how order {order} is paid.",
        "return": lambda: f"I can set up a return of {names} from order {order}.",
        "exchange": lambda: f"I can exchange {_swaps(change, 'for')} in order {order}.",
        "user_address": lambda: f"I can change your default address to {_address(change.get('address'))}.",
    }
    parts = [lead[kind](), *_money_lines(change)]
    if kind == "modify_items":
        parts.append("After this, the order's items can't be changed again and it can't be cancelled.")
    if kind in ("return", "exchange"):
        parts.append("You'll get an email explaining how to send the items back.")
    parts.append("Shall I go ahead?")
    return " ".join(parts)


def change_done(change: dict[str, Any]) -> str:
    kind, order = change["kind"], change.get("order_id")
    lead = {
        "cancel": f"Done: order {order} is cancelled.",
        "modify_items": f"Done: the items in order {order} have been changed.",
        "modify_address": f"Done: order {order} will ship to {_address(change.get('address'))}.",
        "modify_payment": f"Done: order {order} is now paid with the new payment method.",
        "return": f"Done: the return for order {order} is set up, and you'll get an email on how to send the items.",
        "exchange": (
            f"Done: the exchange for order {order} is set up, and you'll get an email on how to send the items."
        ),
        "user_address": f"Done: your default address is now {_address(change.get('address'))}.",
    }[kind]
    return " ".join([lead, *_money_lines(change, done=True)])


def after_change(code: Code, change: dict[str, Any] | None = None) -> str:
    """What the customer is told after confirming (or cancelling) an order change, by its outcome."""
    if code is Code.CHANGE_APPLIED and change:
        return change_done(change)
    if code is Code.OK:
        return CHANGE_CANCELLED
    if code is Code.LIMIT_EXCEEDED:
        return CHANGE_REVIEW
    if code is Code.EXPIRED:
        return CHANGE_EXPIRED
    if code is Code.NOT_ALLOWED:
        return CHANGE_NOT_YOURS
    if code is Code.INVALID_STATE:
        return CHANGE_MOVED_ON if change and change.get("status") == OrderChangeStatus.REFUSED else CHANGE_HANDLED
    return change_refused(code, change.get("kind") if change else None)


def change_refused(code: Code, kind: str | None) -> str:
    """Why an order change cannot be made, in one sentence (the desk offers a person after it)."""
    if code is Code.NOT_ELIGIBLE and kind in CHANGE_NOT_ELIGIBLE:
        return CHANGE_NOT_ELIGIBLE[kind]
    return for_code(code)


# --- for staff: why a ticket exists ---------------------------------------------------------------
TICKET_REASONS = {
    "legal": "Legal threat or complaint",
    "fraud": "Fraud or chargeback concern",
    "human_request": "Customer asked for a person",
    "security": "Asked about another customer's order or account",
    "security_concern": "A security concern the customer raised",
    "identity": "Identity could not be verified",
    "refund_approval": "Refund over the autonomous limit needs approval",
    "change_approval": "Order change whose refund passes the autonomous limit needs approval",
    "payment_failed": "Payment gateway declined a refund",
    "tool_failure": "A system the bot relies on kept failing",
    "model_failure": "The AI model was unavailable",
    "turn_limit": "The bot could not finish within its step limit",
    "token_budget": "The conversation used up its token budget",
    "clarification": "The bot could not get what it needed after two tries",
    "handoff": "A person took over the conversation",
    "question": "A question the help center could not answer",
    "dead_letter": "A message could not be answered after several attempts",
    "other": "Escalated by the bot",
}


def reason_text(reason: str) -> str:
    return TICKET_REASONS.get(reason, TICKET_REASONS["other"])
