// Package bundled carries a LiteLLM price map inside the binary, so that
// tariff rates usage out of the box on a machine that cannot fetch one.
// `tariff prices sync` (or prices.file) replaces it with a current list.
package bundled

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
)

// LiteLLM is BerriAI/litellm's model_prices_and_context_window.json at
// commit 5390469c1b29860b4df398e42f37c4fb02355734 (2026-02-21).
//
//go:embed litellm_model_prices.json
var LiteLLM []byte

// LiteLLMSource names the bundled list for people.
const LiteLLMSource = "LiteLLM price map bundled with tariff (2026-02-21)"

// VersionID returns a price-version id derived from a price list's bytes:
// the same list always gets the same id, so an event rated twice (a
// redelivery after a crash) records the same version both times.
func VersionID(prefix string, data []byte) string {
	sum := sha256.Sum256(data)
	return prefix + "-" + hex.EncodeToString(sum[:6])
}
