package loadgen

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/shopspring/decimal"
	"github.com/tariff-dev/tariff/schemas"
)

// Intended returns the usage events a decoder must produce from m (with
// schemas.DecoderFor(m.Format.String(), schemas.DecodeOptions{})): one for
// a gateway, LiteLLM or OpenRouter message, one per billable record of a
// meter message.
// It returns nil for a malformed message. It allocates; it is for tests and
// tools, not the publishing path.
//
// The idempotency keys are derived here the way each decoder documents it,
// independently of the decoders' code, so a test comparing the two checks
// both.
func (g *Generator) Intended(m *Message) []schemas.UsageEvent {
	if m.Kind == KindMalformed {
		return nil
	}
	r := &m.Request
	mod := &g.models[r.Model]
	base := schemas.UsageEvent{
		Time:       time.UnixMilli(r.TimeMs).UTC(),
		CustomerID: g.CustomerID(r.Customer),
		Provider:   mod.provider,
		Model:      mod.name,
		Tier:       r.Tier,
	}
	team, project := teams[r.Team], projects[r.Project]
	cost := func() decimal.NullDecimal {
		in, out := g.requestCost(r)
		return decimal.NullDecimal{Decimal: decimal.RequireFromString(string(appendCost(nil, addU128(in, out)))), Valid: true}
	}
	switch m.Format {
	case FormatGateway:
		ev := base
		ev.ID = string(appendGatewayID(nil, r))
		ev.Dimensions = []schemas.Dimension{{Key: "team", Value: team}, {Key: "project", Value: project}}
		ev.Quantities = r.Quantities
		ev.ReportedCost = cost()
		ev.Source = schemas.SourceGateway
		return []schemas.UsageEvent{ev}
	case FormatLiteLLM:
		ev := base
		ev.ID = "litellm:" + string(appendRespID(nil, r))
		// DefaultLiteLLMDimensions: team <- user_api_key_team_alias,
		// api_key_alias <- user_api_key_alias, model_group.
		ev.Dimensions = []schemas.Dimension{
			{Key: "team", Value: team},
			{Key: "api_key_alias", Value: project + "-key"},
			{Key: "model_group", Value: mod.name},
		}
		ev.Quantities = r.Quantities
		ev.ReportedCost = cost()
		ev.Source = schemas.SourceLiteLLM
		return []schemas.UsageEvent{ev}
	case FormatOpenRouter:
		ev := base
		ev.ID = "openrouter:" + string(appendOpenRouterID(nil, r))
		// The wrapper's dimensions, in order; provider and model as
		// OpenRouter reports them.
		ev.Dimensions = []schemas.Dimension{{Key: "team", Value: team}, {Key: "project", Value: project}}
		ev.Quantities = r.Quantities
		ev.ReportedCost = cost()
		ev.Source = schemas.SourceOpenRouter
		return []schemas.UsageEvent{ev}
	case FormatMeter:
		uid := string(appendRespID(nil, r))
		var out []schemas.UsageEvent
		for _, u := range meterUnits {
			n := r.Quantities[u]
			if n == 0 {
				continue
			}
			meter, _, _, _ := meterRecord(u)
			ev := base
			ev.ID = MeterKey(base.CustomerID, uid, meter, u, r.Tier, mod.name, mod.provider)
			ev.Dimensions = []schemas.Dimension{{Key: "team", Value: team}, {Key: "project", Value: project}}
			ev.Quantities[u] = n
			ev.Source = schemas.SourceMeter
			out = append(out, ev)
		}
		return out
	}
	return nil
}

// MeterKey derives the idempotency key of a meter record with a uniqueId,
// as schemas/meter.go documents it:
//
//	"meter:" + uniqueId (first 200 bytes) + ":" +
//	hex(sha256("v1", customer, uniqueId, meterApiName, unit, tier, model, provider)[:16])
//
// with every part length-prefixed ("<len>:<bytes>").
func MeterKey(customer, uniqueID, meter string, u schemas.Unit, t schemas.Tier, model, provider string) string {
	h := sha256.New()
	for _, p := range []string{"v1", customer, uniqueID, meter, u.String(), t.String(), model, provider} {
		h.Write(strconv.AppendInt(nil, int64(len(p)), 10))
		h.Write([]byte{':'})
		h.Write([]byte(p))
	}
	prefix := uniqueID
	if len(prefix) > 200 {
		prefix = prefix[:200]
	}
	return "meter:" + prefix + ":" + hex.EncodeToString(h.Sum(nil)[:16])
}
