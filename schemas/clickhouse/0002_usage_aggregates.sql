-- Pre-aggregated usage per customer, price entry and unit type, per hour
-- and per day, for dashboards.
--
-- Each row is the window's running total as the owning partition's state
-- knew it after one of its batches, versioned by that partition's batch
-- sequence. ReplacingMergeTree(version) keeps the newest total per key, so
-- a total written twice (a batch redelivered after a crash) or late never
-- changes what a query returns. Read with FINAL. The partition is part of
-- the key: should one customer's usage ever arrive on two partitions (a
-- producer not keying by customer id), each partition's total is kept and
-- the sum over partitions is still exact.
CREATE TABLE IF NOT EXISTS usage_hourly
(
    window_start DateTime,
    customer_id  String,
    provider     String,
    price_key    String,
    unit         String,
    quantity     Int64,
    events       UInt64,
    cost         Decimal(38, 24),
    charge       Decimal(38, 28),
    partition    Int32,
    version      UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (customer_id, price_key, unit, window_start, partition);

CREATE TABLE IF NOT EXISTS usage_daily
(
    day         Date,
    customer_id String,
    provider    String,
    price_key   String,
    unit        String,
    quantity    Int64,
    events      UInt64,
    cost        Decimal(38, 24),
    charge      Decimal(38, 28),
    partition   Int32,
    version     UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (customer_id, price_key, unit, day, partition);
