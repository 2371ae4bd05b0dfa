package schemas

// Shape sniffing: which marker keys does a record's top level carry? Used by
// the auto decoder and by the OpenRouter decoder, whose inputs come in four
// shapes.

const (
	mkResourceSpans = 1 << iota
	mkMeterAPIName
	mkLiteLLM // call_type, custom_llm_provider, startTime, response_cost, model_map_information
	mkData
	mkGeneration // tokens_prompt, native_tokens_prompt
	mkCustomerID
	mkResponse
	mkModel
	mkGatewayUsage // openai_usage, openai_responses_usage, anthropic_usage
	mkChoices      // choices, object
	mkUsage
	mkEmpty // the object has no members
)

// sniffRecord scans the object at s's position (without consuming it) and
// returns its marker keys.
func sniffRecord(s *scanner) (uint32, error) {
	probe := *s
	var m uint32
	more, err := probe.objectStart()
	if err == nil && !more {
		m |= mkEmpty
	}
	for err == nil && more {
		var key []byte
		if key, err = probe.objectKey(); err != nil {
			break
		}
		switch string(key) {
		case "resourceSpans":
			m |= mkResourceSpans
		case "meterApiName":
			m |= mkMeterAPIName
		case "call_type", "custom_llm_provider", "startTime", "response_cost", "model_map_information":
			m |= mkLiteLLM
		case "data":
			m |= mkData
		case "tokens_prompt", "native_tokens_prompt":
			m |= mkGeneration
		case "customer_id":
			m |= mkCustomerID
		case "response":
			m |= mkResponse
		case "model":
			m |= mkModel
		case "openai_usage", "openai_responses_usage", "anthropic_usage":
			m |= mkGatewayUsage
		case "choices", "object":
			m |= mkChoices
		case "usage":
			m |= mkUsage
		}
		if err = probe.skipValue(); err != nil {
			break
		}
		more, err = probe.objectNext()
	}
	return m, err
}

// autoDecoder picks a decoder per message from the first record's shape.
// Errors carry the chosen decoder's name, so the dead-letter record says
// which format the message was taken for.
type autoDecoder struct {
	gateway    Decoder
	litellm    Decoder
	openrouter Decoder
	meter      Decoder
}

func (a *autoDecoder) Name() string { return FormatAuto }

func (a *autoDecoder) Decode(dst []UsageEvent, msg []byte) ([]UsageEvent, error) {
	d, err := a.pick(msg)
	if err != nil {
		return dst, err
	}
	return d.Decode(dst, msg)
}

func (a *autoDecoder) pick(msg []byte) (Decoder, error) {
	s := scanner{data: msg}
	if s.peek() == '[' {
		s.pos++
		if s.peek() == ']' {
			return a.gateway, nil // an empty batch: any decoder returns nothing
		}
	}
	if s.peek() != '{' {
		return nil, &DecodeError{Decoder: FormatAuto, Reason: s.unexpected("a JSON object or array").Error()}
	}
	m, err := sniffRecord(&s)
	if err != nil {
		return nil, &DecodeError{Decoder: FormatAuto, Reason: err.Error()}
	}
	switch {
	case m&mkResourceSpans != 0:
		return a.openrouter, nil
	case m&mkMeterAPIName != 0:
		return a.meter, nil
	case m&mkLiteLLM != 0:
		return a.litellm, nil
	case m&(mkData|mkGeneration) != 0:
		return a.openrouter, nil
	case m&mkCustomerID != 0 && m&mkResponse != 0 && m&mkModel == 0:
		return a.openrouter, nil // wrapper around an OpenRouter response
	case m&(mkCustomerID|mkGatewayUsage) != 0:
		return a.gateway, nil
	case m&mkChoices != 0 || m&mkUsage != 0:
		return a.openrouter, nil
	}
	return nil, &DecodeError{Decoder: FormatAuto, Reason: "unrecognized message shape: expected a gateway event, LiteLLM payload, OpenRouter response/generation/trace, or meter record"}
}
