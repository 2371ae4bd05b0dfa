package schemas

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Decoder turns one message into usage events. It appends to dst and returns it;
// on error nothing is appended and the error names the field (and record index
// for arrays) and what was expected.
//
// Ownership: the decoder does not retain msg or dst; the events it appends own
// their strings (nothing aliases msg), so msg may be reused as soon as Decode
// returns. Decode does not block. The caller acks the source message; a
// message that fails goes to the dead-letter topic whole (the error is a
// *DecodeError carrying the decoder's name and the reason).
//
// Decoders are safe for concurrent use: they keep no per-call state.
// Decoders do not call UsageEvent.Validate (the pipeline does, with its
// clock), but they refuse what is impossible on its face: negative or
// fractional counts, a missing id, customer or model, an unparsable time.
type Decoder interface {
	Decode(dst []UsageEvent, msg []byte) ([]UsageEvent, error)
	Name() string
}

// Formats DecoderFor accepts.
const (
	FormatGateway    = "gateway"
	FormatLiteLLM    = "litellm"
	FormatOpenRouter = "openrouter"
	FormatMeter      = "meter"
	FormatAuto       = "auto"
)

// ErrUnknownFormat is returned by DecoderFor for a format it does not know.
var ErrUnknownFormat = errors.New("unknown decoder format")

// DecodeError says why a message was refused. It is what the dead-letter
// record carries: Decoder and Reason are stable enough to count and alert on.
type DecodeError struct {
	// Decoder is the name of the decoder that refused the message.
	Decoder string
	// Index is the 0-based record within the message (array element, NDJSON
	// line, or OTLP span); 0 for a message holding one record.
	Index int
	// Field is the JSON path of the offending field ("usage.input",
	// "metadata.usage_object.prompt_tokens"), or "" when the message as a
	// whole is malformed.
	Field string
	// Reason says what was wrong and what was expected.
	Reason string
}

func (e *DecodeError) Error() string {
	var b strings.Builder
	b.WriteString(e.Decoder)
	b.WriteString(": record ")
	b.WriteString(strconv.Itoa(e.Index))
	if e.Field != "" {
		b.WriteString(": ")
		b.WriteString(e.Field)
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	return b.String()
}

// DecodeOptions configures identity and dimension mapping for the partner
// formats. The zero value selects the documented defaults.
type DecodeOptions struct {
	// LiteLLMCustomerFields lists, in order of preference, where a LiteLLM
	// StandardLoggingPayload keeps the customer id; the first present,
	// non-empty value wins. Paths are dotted: "end_user",
	// "metadata.user_api_key_end_user_id", "metadata.requester_metadata.<key>",
	// "metadata.<key>", or any other path into the payload.
	// Default: DefaultLiteLLMCustomerFields.
	//
	// Mixing identity kinds in one list (an end user and a key alias, say)
	// means one tenant can appear under two ids depending on whether the
	// caller set `user`; production configs should usually name one field.
	LiteLLMCustomerFields []string
	// LiteLLMDimensions maps dimension keys to payload paths. A path that is
	// absent, null or empty adds no dimension.
	// Default: DefaultLiteLLMDimensions. Set to an empty non-nil slice for
	// none.
	LiteLLMDimensions []DimensionField
	// LiteLLMLegacyTimeZone is the zone of the naive datetimes in LiteLLM's
	// legacy v1 payload ("2026-02-22 00:00:00.123456", Python's str() of the
	// proxy's local time). Default: UTC.
	LiteLLMLegacyTimeZone *time.Location
	// OpenRouterCustomerFields lists, in order of preference, where an
	// OpenRouter record keeps the customer id. A name is looked up as a
	// top-level field of a completion response or generation record and as
	// a span attribute key in a Broadcast trace. A wrapper's "customer_id"
	// always wins. Default: DefaultOpenRouterCustomerFields.
	OpenRouterCustomerFields []string
	// MeterCustomerFields lists where a meter record keeps the customer id:
	// "customerId" or "dimensions.<key>". Default: DefaultMeterCustomerFields.
	MeterCustomerFields []string
}

// DimensionField maps one dimension key to where its value is found.
type DimensionField struct {
	Key  string
	Path string
}

// Defaults for DecodeOptions.
var (
	DefaultLiteLLMCustomerFields = []string{
		"end_user",
		"metadata.user_api_key_end_user_id",
		"metadata.user_api_key_alias",
		"metadata.user_api_key_team_id",
	}
	DefaultLiteLLMDimensions = []DimensionField{
		{Key: "team", Path: "metadata.user_api_key_team_alias"},
		{Key: "api_key_alias", Path: "metadata.user_api_key_alias"},
		{Key: "model_group", Path: "model_group"},
	}
	DefaultOpenRouterCustomerFields = []string{"user", "external_user", "user.id"}
	DefaultMeterCustomerFields      = []string{"customerId"}
)

// withDefaults returns a copy with every unset field at its default.
func (o DecodeOptions) withDefaults() DecodeOptions {
	if o.LiteLLMCustomerFields == nil {
		o.LiteLLMCustomerFields = DefaultLiteLLMCustomerFields
	}
	if o.LiteLLMDimensions == nil {
		o.LiteLLMDimensions = DefaultLiteLLMDimensions
	}
	if o.LiteLLMLegacyTimeZone == nil {
		o.LiteLLMLegacyTimeZone = time.UTC
	}
	if o.OpenRouterCustomerFields == nil {
		o.OpenRouterCustomerFields = DefaultOpenRouterCustomerFields
	}
	if o.MeterCustomerFields == nil {
		o.MeterCustomerFields = DefaultMeterCustomerFields
	}
	return o
}

// Validate reports every malformed option.
func (o DecodeOptions) Validate() error {
	var errs []error
	checkPaths := func(name string, paths []string) {
		if paths != nil && len(paths) == 0 {
			errs = append(errs, fmt.Errorf("%s: empty list; leave it unset for the default", name))
		}
		for i, p := range paths {
			if p == "" || strings.HasPrefix(p, ".") || strings.HasSuffix(p, ".") || strings.Contains(p, "..") {
				errs = append(errs, fmt.Errorf("%s[%d]: path %q: expected dot-separated field names", name, i, p))
			}
		}
	}
	checkPaths("litellm_customer_fields", o.LiteLLMCustomerFields)
	checkPaths("openrouter_customer_fields", o.OpenRouterCustomerFields)
	checkPaths("meter_customer_fields", o.MeterCustomerFields)
	for i, p := range o.MeterCustomerFields {
		if p != "customerId" && !strings.HasPrefix(p, "dimensions.") {
			errs = append(errs, fmt.Errorf("meter_customer_fields[%d]: %q: expected \"customerId\" or \"dimensions.<key>\"", i, p))
		}
	}
	seen := map[string]bool{}
	for i, d := range o.LiteLLMDimensions {
		if d.Key == "" {
			errs = append(errs, fmt.Errorf("litellm_dimensions[%d]: empty key", i))
		}
		if seen[d.Key] {
			errs = append(errs, fmt.Errorf("litellm_dimensions[%d]: duplicate key %q", i, d.Key))
		}
		seen[d.Key] = true
		if d.Path == "" || strings.HasPrefix(d.Path, ".") || strings.HasSuffix(d.Path, ".") || strings.Contains(d.Path, "..") {
			errs = append(errs, fmt.Errorf("litellm_dimensions[%d]: path %q: expected dot-separated field names", i, d.Path))
		}
	}
	return errors.Join(errs...)
}

// DecoderFor returns the decoder for a format: "gateway", "litellm",
// "openrouter", "meter", or "auto" (which sniffs each message's shape).
func DecoderFor(format string, opts DecodeOptions) (Decoder, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("decode options: %w", err)
	}
	opts = opts.withDefaults()
	switch format {
	case FormatGateway:
		return gatewayDecoder{}, nil
	case FormatLiteLLM:
		return newLiteLLMDecoder(opts), nil
	case FormatOpenRouter:
		return newOpenRouterDecoder(opts), nil
	case FormatMeter:
		return newMeterDecoder(opts), nil
	case FormatAuto:
		return &autoDecoder{
			gateway:    gatewayDecoder{},
			litellm:    newLiteLLMDecoder(opts),
			openrouter: newOpenRouterDecoder(opts),
			meter:      newMeterDecoder(opts),
		}, nil
	}
	return nil, fmt.Errorf("%w %q: expected one of gateway, litellm, openrouter, meter, auto", ErrUnknownFormat, format)
}

// errAt builds a DecodeError, turning a scanner error into its reason.
func errAt(decoder string, idx int, field string, err error) *DecodeError {
	var de *DecodeError
	if errors.As(err, &de) {
		return de
	}
	for {
		fe, ok := err.(*fieldErr)
		if !ok {
			break
		}
		field, err = joinPath(field, fe.field), fe.err
	}
	return &DecodeError{Decoder: decoder, Index: idx, Field: field, Reason: err.Error()}
}

// joinPath appends a key to a dotted path.
func joinPath(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}
