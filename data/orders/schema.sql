-- Sample orders database of Kestrel Home Appliances (fictional). llmops_nb.tools.sample_orders_db builds it
-- from this schema and the rows in products.csv, customers.csv and orders.jsonl. Dates are ISO (YYYY-MM-DD);
-- the data set is a snapshot taken on 2026-03-20.

CREATE TABLE products (
    sku       TEXT PRIMARY KEY,            -- catalogue id, as in data/sample/products/catalog.csv
    name      TEXT NOT NULL UNIQUE,
    category  TEXT NOT NULL,
    price_eur REAL NOT NULL CHECK (price_eur > 0),
    price_usd REAL NOT NULL CHECK (price_usd > 0),
    stock     INTEGER NOT NULL CHECK (stock >= 0)
);

-- Synthetic people: the names and e-mail addresses are invented (example.com / example.org). No tool reads this
-- table; in a real deployment they are personal data that the PII step would redact from any text.
CREATE TABLE customers (
    customer_id  TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    email        TEXT NOT NULL,
    country      TEXT NOT NULL,            -- ISO 3166-1 alpha-2
    loyalty_tier TEXT NOT NULL CHECK (loyalty_tier IN ('none', 'member', 'silver', 'gold'))
);

CREATE TABLE orders (
    order_id     TEXT PRIMARY KEY,         -- ORD-nnnnn
    customer_id  TEXT NOT NULL REFERENCES customers (customer_id),
    status       TEXT NOT NULL CHECK (status IN ('placed', 'paid', 'shipped', 'delivered', 'returned', 'cancelled',
                                                 'refunded')),
    placed_at    TEXT NOT NULL,
    shipping     TEXT NOT NULL CHECK (shipping IN ('standard', 'express', 'click_collect')),
    carrier      TEXT,                     -- DHL (EU warehouse, Leipzig) or UPS (US warehouse, Columbus)
    tracking     TEXT,
    pickup_store TEXT,                     -- Click & Collect store city
    ship_country TEXT NOT NULL,
    shipped_at   TEXT,
    delivered_at TEXT,
    returned_at  TEXT,                     -- the day the return reached the warehouse or store
    refunded_at  TEXT,
    cancelled_at TEXT,
    shipping_fee REAL NOT NULL,
    total        REAL NOT NULL,            -- goods plus shipping
    currency     TEXT NOT NULL CHECK (currency IN ('EUR', 'USD'))
);

CREATE TABLE order_items (
    order_id   TEXT NOT NULL REFERENCES orders (order_id),
    line       INTEGER NOT NULL,
    sku        TEXT NOT NULL REFERENCES products (sku),
    qty        INTEGER NOT NULL CHECK (qty > 0),
    unit_price REAL NOT NULL,
    PRIMARY KEY (order_id, line)
);
