-- Rated line items: one row per usage event and unit type.
--
-- Money is exact: prices carry up to 24 decimal places (price lists hold
-- values such as 0.0000029999900000000002), a cost is quantity x price (24
-- places) and a charge is cost x a markup with 4 places (28). Nothing is
-- rounded on the way in. The ranges that leaves, 10^14 USD for a cost and
-- 10^10 USD for a charge, bound one row and one query's sum; the rater
-- refuses an event whose amounts would not fit.
--
-- Runs on ClickHouse 18.16 and on current releases: no LowCardinality (it is
-- experimental on 18.16), no DateTime64 (absent there); event_ms carries
-- the millisecond epoch time for ordering within a second.
--
-- ReplacingMergeTree keyed by (customer_id, event_id, unit): a batch written
-- twice (a crash after the insert and before the offset commit) collapses
-- to one row, and the row rated last (rated_at) wins. Queries that total
-- money read with FINAL so that they are exact before background merges
-- run. Both copies of a row share event_date, so they share a partition,
-- which ReplacingMergeTree needs to collapse them.
CREATE TABLE IF NOT EXISTS rated_lines
(
    event_date        Date,
    event_time        DateTime,
    event_ms          Int64,
    customer_id       String,
    event_id          String,
    unit              String,
    quantity          Int64,
    unit_price        Decimal(38, 24),
    cost              Decimal(38, 24),
    charge            Decimal(38, 28),
    provider          String,
    model             String,
    price_key         String,
    service_tier      String,
    price_version     String,
    rate_card_id      String,
    rate_card_version UInt32,
    source            String,
    dim_keys          Array(String),
    dim_values        Array(String),
    kafka_topic       String,
    kafka_partition   Int32,
    kafka_offset      Int64,
    rated_at          DateTime
)
ENGINE = ReplacingMergeTree(rated_at)
PARTITION BY toYYYYMM(event_date)
ORDER BY (customer_id, event_id, unit);
