"""get_product_details: a product's variants (options, price, availability), the items an order's
line may be changed or exchanged to."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy import func, select

from storage.models import Product, Variant
from storage.types import format_cents
from tools.codes import Code, ToolResult
from tools.context import CallContext, Deps, Tool

MAX_VARIANTS = 100  # what one answer lists; a product with more is rare and the model is told


class GetProductDetailsInput(BaseModel):
    """List a product's variants: each variant's item id, options (such as colour and size), price
    and whether it is available now.

    Use the product_id of an order's item (from lookup_order), not its item_id. An order's item can
    only be changed or exchanged to another available variant of the same product.
    """

    product_id: str = Field(description="The product's id, as lookup_order shows it.", min_length=1, max_length=64)


async def get_product_details(args: GetProductDetailsInput, ctx: CallContext, deps: Deps) -> ToolResult:
    wanted = args.product_id.strip()
    async with deps.store.read() as s:
        product = await s.get(Product, wanted)
        if product is None:
            owner = await s.scalar(select(Variant.product_id).where(Variant.item_id == wanted))
            note = "No product has that id."
            if owner is not None:
                note += f" {wanted} is an item id (one variant); its product's id is {owner}."
            return ToolResult(Code.NOT_FOUND, note, {"product_id": wanted})
        variants = (
            await s.scalars(
                select(Variant).where(Variant.product_id == product.id).order_by(Variant.item_id).limit(MAX_VARIANTS)
            )
        ).all()
        count = await s.scalar(select(func.count()).select_from(Variant).where(Variant.product_id == product.id))
    data: dict[str, object] = {
        "product_id": product.id,
        "name": product.name,
        "variants": [
            {
                "item_id": v.item_id,
                "options": v.options,
                "price": format_cents(v.price_cents),
                "price_amount": v.price_cents / 100,
                "available": v.available,
            }
            for v in variants
        ],
    }
    note = "" if (count or 0) <= MAX_VARIANTS else f"Only the first {MAX_VARIANTS} of {count} variants are listed."
    return ToolResult(Code.OK, note, data)


TOOL = Tool("get_product_details", GetProductDetailsInput, get_product_details, "Checking the product")
