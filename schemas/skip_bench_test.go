package schemas
import ("testing";"encoding/json")
func BenchmarkSkipWhole(b *testing.B){ msg:=readTestdata(b,"litellm_standard_logging_payload.json"); b.SetBytes(int64(len(msg))); for b.Loop(){ s:=scanner{data:msg}; if err:=s.skipValue(); err!=nil {b.Fatal(err)} } }
func BenchmarkJSONValid(b *testing.B){ msg:=readTestdata(b,"litellm_standard_logging_payload.json"); b.SetBytes(int64(len(msg))); for b.Loop(){ if !json.Valid(msg) {b.Fatal()} } }
