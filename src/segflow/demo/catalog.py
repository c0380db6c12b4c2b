"""The simulated shop's catalogue: categories, products, features, marketing campaigns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    name: str
    category: str
    price: float


CATEGORIES = ("shoes", "jackets", "pants", "accessories", "bags")

PRODUCTS: tuple[Product, ...] = (
    Product("sku-trail-1", "Trail Runner GTX", "shoes", 139.0),
    Product("sku-trail-2", "Trail Runner Lite", "shoes", 119.0),
    Product("sku-road-1", "Road Racer 3", "shoes", 159.0),
    Product("sku-walk-1", "City Walker", "shoes", 89.0),
    Product("sku-jkt-1", "Women's Storm Jacket", "jackets", 189.0),
    Product("sku-jkt-2", "Women's Trail Shell", "jackets", 149.0),
    Product("sku-jkt-3", "Down Parka", "jackets", 249.0),
    Product("sku-pnt-1", "Trail Tights", "pants", 69.0),
    Product("sku-pnt-2", "Hiking Pants", "pants", 79.0),
    Product("sku-acc-1", "Running Socks (3-pack)", "accessories", 19.0),
    Product("sku-acc-2", "Headlamp", "accessories", 39.0),
    Product("sku-acc-3", "Sport Watch", "accessories", 299.0),
    Product("sku-bag-1", "Hydration Vest", "bags", 109.0),
    Product("sku-bag-2", "Day Pack 20L", "bags", 89.0),
)

PRODUCTS_BY_CATEGORY: dict[str, tuple[Product, ...]] = {
    c: tuple(p for p in PRODUCTS if p.category == c) for c in CATEGORIES
}

SEARCH_TERMS: dict[str, tuple[str, ...]] = {
    "shoes": ("running shoes", "trail running shoes", "walking shoes"),
    "jackets": ("rain jacket", "womens jackets", "down jacket"),
    "pants": ("hiking pants", "running tights"),
    "accessories": ("headlamp", "sport watch", "socks"),
    "bags": ("hydration vest", "backpack"),
}

FEATURES = ("wishlist", "size_guide", "compare", "reviews", "ar_try_on", "price_alerts")

CAMPAIGNS = ("spring_sale", "new_arrivals", "trail_season", "loyalty_rewards")

UTM_SOURCES = ("instagram", "facebook", "google", "newsletter", "tiktok")
