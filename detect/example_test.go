package detect_test

import (
	"fmt"

	"github.com/iatp/iatp/detect"
)

func ExampleScrubJSON() {
	body := []byte(`{"name": "Alice", "email": "alice@example.com", "card": 4532015112830366,
  "note": "ssn 123-45-6789, token ghp_abc123abc123abc123abc123abc123abc123"}`)

	scrubbed, found, err := detect.ScrubJSON(nil, body, detect.Options{})
	if err != nil {
		fmt.Println("400:", err) // not JSON: refuse the request
		return
	}
	fmt.Println(found.Names())
	fmt.Println(found.Has(detect.CreditCard))
	fmt.Printf("%s\n", scrubbed)

	_, _, err = detect.ScrubJSON(nil, []byte(`{"a": 1,}`), detect.Options{})
	fmt.Println(err)
	// Output:
	// [credit_card ssn email secret]
	// true
	// {"name": "Alice", "email": "[EMAIL_REDACTED]", "card": "[CREDIT_CARD_REDACTED]",
	//   "note": "ssn [SSN_REDACTED], token [SECRET_REDACTED]"}
	// invalid character '}' looking for beginning of object key string at offset 8
}

func ExampleScrubText() {
	event := []byte("data: card 4532-0151-1283-0366 for bob@example.com\n\n")
	scrubbed, found := detect.ScrubText(nil, event)
	fmt.Printf("%q %v\n", scrubbed, found)
	// Output:
	// "data: card [CREDIT_CARD_REDACTED] for [EMAIL_REDACTED]\n\n" credit_card,email
}

func ExampleParseJSON() {
	body := []byte(`{"task": "pay", "amount": 1.25e2, "card": "４５３２ ０１５１ １２８３ ０３６６", "n": 4.532015112830366e15}`)

	parsed, err := detect.ParseJSON(nil, body, detect.Options{Value: true})
	if err != nil {
		fmt.Println("400:", err)
		return
	}
	fmt.Println(parsed.Found)
	fmt.Printf("%s\n", parsed.Scrubbed)

	// The value for the policy, from the same pass.
	v := parsed.Value.(map[string]any)
	amount, _ := v["amount"].(detect.Number).Int64()
	fmt.Println(v["task"], amount)
	// Output:
	// credit_card
	// {"task": "pay", "amount": 1.25e2, "card": "[CREDIT_CARD_REDACTED]", "n": "[CREDIT_CARD_REDACTED]"}
	// pay 125
}
