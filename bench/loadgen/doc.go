// Package loadgen generates a realistic, deterministic stream of LLM usage
// messages for tariff, publishes it to Kafka, and computes, independently of
// the pipeline, the exact totals that stream must produce.
//
// A test or a benchmark does three things:
//
//	cfg := loadgen.DefaultConfig()
//	cfg.Seed, cfg.Events, cfg.Start = 7, 200_000, time.Now().UTC()
//	g, err := loadgen.New(cfg)
//	stats, err := loadgen.Publish(ctx, g, loadgen.PublishConfig{Brokers: brokers})
//	exp := g.Expected() // exact totals per (customer, price key, unit), and counts
//	diffs, err := exp.Compare(observed) // observed: what ClickHouse says
//
// or, to know the totals before publishing, loadgen.Plan(cfg).
//
// # The stream
//
// Every message is one of three kinds:
//
//   - fresh: a new request (one usage event, or for meter records one event
//     per unit), in gateway JSON, a LiteLLM StandardLoggingPayload, an
//     OpenRouter chat completion wrapped with its customer, or an
//     Amberflo-style meter-record array, picked by Config.Formats;
//   - duplicate: an earlier fresh request sent again, soon after
//     (within Config.NearDupWindow messages) or, for Config.LateDupShare of
//     them, anywhere later in the stream, so hours later in event time when
//     Config.Span is hours;
//   - malformed: broken JSON, a negative token count, no customer, or an
//     event time years in the future. A decoder refuses the first three and
//     UsageEvent.Validate the fourth, so every one must reach the
//     dead-letter topic.
//
// Customers and models are drawn from Zipf distributions, token counts from
// log-normal distributions per model family (reasoning tokens for reasoning
// models, prompt-cache reads where the model has a cache-read price, cache
// writes for Claude models, rare long-context requests above a model's
// price band). Every unit an event carries has a price for its model, tier
// and band, so every valid event is rateable.
//
// # Duplicates across formats
//
// Deduplication is by idempotency key, and each decoder derives the key its
// own way: the gateway uses "id" verbatim, LiteLLM uses "litellm:" + the
// payload id, meter records use "meter:" + uniqueId + ":" + a hash of
// (customer, uniqueId, meter, unit, tier, model, provider). So:
//
//   - gateway <-> LiteLLM: possible. A request that will be re-sent through
//     the other format is generated with the gateway id "litellm:<response
//     id>" (a gateway that forwards LiteLLM's call id), and both messages
//     carry the same quantities, so both decode to the same key and rate
//     identically. Config.CrossFormatShare of the duplicates of gateway and
//     LiteLLM requests take this path.
//   - OpenRouter: duplicates stay within OpenRouter messages (key
//     "openrouter:" + the generation id). OpenRouter messages report
//     OpenRouter's own slugs, from a catalog of their own (see
//     Config.Models), which no other format reports.
//   - meter: duplicates stay within the meter topic. A meter request is one
//     event per unit, each with its own key, while a gateway or LiteLLM
//     message carries all units of a request under one key, so neither can
//     stand in for a meter request (nor the reverse).
//
// # Expected totals
//
// The expectation is computed from what the generator intended, not by
// decoding or rating its output: for each unique event, the model is
// resolved with rating.Snapshot.Lookup, the unit prices come from
// rating.ModelPrice.Table for the event's prompt size, minute and tier, and
// cost = quantity x price and charge = cost x (1 + markup/100) are computed
// with shopspring/decimal. Units the price entry treats as informational
// (a request count on a token-priced model) carry no line, as in rating.
//
// The price band of an event follows the event, not the request: a meter
// request is several events, each judged on its own input-side tokens (this
// is how tariff rates meter records; see schemas' meter decoder).
package loadgen
