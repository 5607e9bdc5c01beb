package policy

import (
	"context"
	"testing"

	"github.com/iatp/iatp/detect"
)

func BenchmarkDecide(b *testing.B) {
	bank := loadExample(b, "secure_bank.json")
	body := []byte(`{"task":"transfer","amount":120.5,"currency":"EUR","to":"DE89370400440532013000"}`)
	for _, bc := range []struct {
		name  string
		rules []Rule
	}{
		{"builtin", nil},
		{"one-rule-on-caller", []Rule{{Name: "r", When: `caller.trust_score < 3 && "secret" in sensitive`, Decision: "block"}}},
		{"one-rule-on-body", []Rule{{Name: "r", When: `has(request.body.task) && request.body.task.startsWith("delete")`, Decision: "block"}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e, err := New(Config{Rules: bc.rules})
			if err != nil {
				b.Fatal(err)
			}
			in := &Input{Target: Target{Manifest: bank}, Sensitive: detect.Set(detect.Email), Request: Request{Method: "POST", Path: "/proxy", Body: jsonBody(string(body))}}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Decide(ctx, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
