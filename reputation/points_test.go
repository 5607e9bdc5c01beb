package reputation

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParsePoints(t *testing.T) {
	tests := []struct {
		in   string
		want Points
	}{
		{"6", 600},
		{"0", 0},
		{"-0", 0},
		{"10", 1000},
		{"5.5", 550},
		{"4.75", 475},
		{"-0.25", -25},
		{"5.9999999999999964", 600}, // ten successes in the Python package's floats
		{"6.000000000000001", 600},
		{"4.675", 468},  // half away from zero on the decimal text (a float64 would say 4.67)
		{"4.665", 467},  // likewise; float64 4.665 is 4.66499…
		{"4.6749", 467}, // below half
		{"-0.125", -13}, // half away from zero for negatives too
		{"-0.124", -12},
		{"0.005", 1},
		{"0.00499999", 0},
		{"-0.004", 0}, // rounds to zero, and zero has no sign
		{"1e-3", 0},
		{"5e-3", 1},
		{"6E0", 600},
		{"6.0e+0", 600},
		{"0.6e1", 600},
		{"600e-2", 600},
		{"1e2", 10000},
		{"0.000", 0},
		{"1e-999999999999", 0},
		{"0e999999999999", 0},
		{"123456789012345678e-2", 123456789012345678},
		{"-123456789012345678e-2", -123456789012345678},
		{"9999999999999999.994", 999999999999999999},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePoints(tt.in)
			if err != nil {
				t.Fatalf("ParsePoints(%q) error: %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParsePoints(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestParsePointsErrors(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", `reputation: invalid points: "" is not a JSON number`},
		{"-", `reputation: invalid points: "-" is not a JSON number`},
		{"01", `reputation: invalid points: "01" is not a JSON number`},
		{"1.", `reputation: invalid points: "1." is not a JSON number`},
		{".5", `reputation: invalid points: ".5" is not a JSON number`},
		{"+1", `reputation: invalid points: "+1" is not a JSON number`},
		{"1e", `reputation: invalid points: "1e" is not a JSON number`},
		{"1e+", `reputation: invalid points: "1e+" is not a JSON number`},
		{" 1", `reputation: invalid points: " 1" is not a JSON number`},
		{"1 ", `reputation: invalid points: "1 " is not a JSON number`},
		{`"6"`, `reputation: invalid points: "\"6\"" is not a JSON number`},
		{"NaN", `reputation: invalid points: "NaN" is not a JSON number`},
		{"Infinity", `reputation: invalid points: "Infinity" is not a JSON number`},
		{"0x10", `reputation: invalid points: "0x10" is not a JSON number`},
		{"1e17", `reputation: invalid points: "1e17" is out of range`},
		{"1e999999999999", `reputation: invalid points: "1e999999999999" is out of range`},
		{"10000000000000000", `reputation: invalid points: "10000000000000000" is out of range`},
		{"9999999999999999.995", `reputation: invalid points: "9999999999999999.995" is out of range`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePoints(tt.in)
			if err == nil {
				t.Fatalf("ParsePoints(%q) = %d, want error", tt.in, got)
			}
			if !errors.Is(err, ErrInvalidPoints) || err.Error() != tt.want {
				t.Fatalf("ParsePoints(%q) error = %q, want %q wrapping ErrInvalidPoints", tt.in, err, tt.want)
			}
		})
	}
}

func TestPointsJSON(t *testing.T) {
	tests := []struct {
		p          Points
		json, text string
	}{
		{600, "6", "6.00"},
		{550, "5.5", "5.50"},
		{475, "4.75", "4.75"},
		{0, "0", "0.00"},
		{1000, "10", "10.00"},
		{10, "0.1", "0.10"},
		{1, "0.01", "0.01"},
		{-25, "-0.25", "-0.25"},
		{-50, "-0.5", "-0.50"},
		{-200, "-2", "-2.00"},
		{-1, "-0.01", "-0.01"},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			b, err := json.Marshal(tt.p)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.json {
				t.Errorf("json.Marshal(%d) = %s, want %s", tt.p, b, tt.json)
			}
			if s := tt.p.String(); s != tt.text {
				t.Errorf("String() = %q, want %q", s, tt.text)
			}
			var back Points
			if err := json.Unmarshal(b, &back); err != nil || back != tt.p {
				t.Errorf("round trip of %s = %d, %v; want %d", b, back, err, tt.p)
			}
			if f := tt.p.Float64(); f*100 != float64(tt.p) {
				t.Errorf("Float64() = %v, want %v/100", f, tt.p)
			}
		})
	}
}

func TestPointsUnmarshalJSON(t *testing.T) {
	var p Points = 123
	if err := json.Unmarshal([]byte("null"), &p); err != nil || p != 123 {
		t.Fatalf("null: p = %d, err = %v; want 123 unchanged, nil", p, err)
	}
	err := json.Unmarshal([]byte(`"6"`), &p)
	if !errors.Is(err, ErrInvalidPoints) {
		t.Fatalf("string: err = %v, want ErrInvalidPoints", err)
	}
	if err := json.Unmarshal([]byte("5.9999999999999964"), &p); err != nil || p != 600 {
		t.Fatalf("float drift: p = %d, err = %v; want 600", p, err)
	}
}

func TestLevel(t *testing.T) {
	tests := []struct {
		p    Points
		want string
	}{
		{1000, LevelVerifiedPartner},
		{800, LevelVerifiedPartner},
		{799, LevelTrusted},
		{600, LevelTrusted},
		{599, LevelStandard},
		{500, LevelStandard},
		{400, LevelStandard},
		{399, LevelUnknown},
		{200, LevelUnknown},
		{199, LevelUntrusted},
		{0, LevelUntrusted},
		{-1, LevelUntrusted},
	}
	for _, tt := range tests {
		t.Run(tt.p.String(), func(t *testing.T) {
			if got := Level(tt.p); got != tt.want {
				t.Fatalf("Level(%s) = %q, want %q", tt.p, got, tt.want)
			}
		})
	}
}

func TestTruncate(t *testing.T) {
	if got := truncate(strings.Repeat("a", 50), 4); got != "aaaa…" {
		t.Fatalf("truncate = %q", got)
	}
}
