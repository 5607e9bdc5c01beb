package detect

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

var words = strings.Fields(`the quick brown fox jumps over lazy dog agent request policy
trust score manifest booking flight hotel payment invoice customer order shipping
delivery refund please confirm my reservation for next week thanks regards team
support ticket issue resolved pending approved rejected review summary report
data model response latency error retry timeout service cluster region deploy
Paris London Tokyo Berlin Madrid Alice Bob Carol Dave Eve Mallory Trent Victor`)

var firstNames = []string{"Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy"}
var lastNames = []string{"Smith", "Jones", "Garcia", "Müller", "Rossi", "Tanaka", "Dubois", "Novak", "Silva", "Kim"}

func text(r *rand.Rand, n int) string {
	var b strings.Builder
	for k := 0; k < n; k++ {
		if k > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[r.IntN(len(words))])
	}
	return b.String()
}

func uuid(r *rand.Rand) string {
	const hex = "0123456789abcdef"
	b := make([]byte, 36)
	for k := range b {
		switch k {
		case 8, 13, 18, 23:
			b[k] = '-'
		default:
			b[k] = hex[r.IntN(16)]
		}
	}
	return string(b)
}

func timestamp(r *rand.Rand) string {
	return fmt.Sprintf("2024-%02d-%02dT%02d:%02d:%02dZ", 1+r.IntN(12), 1+r.IntN(28), r.IntN(24), r.IntN(60), r.IntN(60))
}

// mixedRecords returns about size bytes of a JSON array of ordinary records:
// names, numbers, timestamps, UUIDs, free text, and an email in one record
// in ten.
func mixedRecords(size int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	b.WriteString("[")
	for id := 0; b.Len() < size; id++ {
		if id > 0 {
			b.WriteString(",\n")
		}
		first, last := firstNames[r.IntN(len(firstNames))], lastNames[r.IntN(len(lastNames))]
		fmt.Fprintf(&b, `{"id":%d,"uuid":"%s","name":"%s %s","created_at":"%s","amount":%d.%02d,"active":%t,`,
			100000+id, uuid(r), first, last, timestamp(r), r.IntN(10000), r.IntN(100), r.IntN(2) == 0)
		fmt.Fprintf(&b, `"tags":["%s","%s"],"title":"%s","note":"%s"`,
			words[r.IntN(len(words))], words[r.IntN(len(words))], text(r, 4), text(r, 20+r.IntN(30)))
		if id%10 == 0 {
			fmt.Fprintf(&b, `,"email":"%s.%s@example.com"`, strings.ToLower(first), strings.ToLower(last))
		}
		b.WriteString("}")
	}
	b.WriteString("]")
	return []byte(b.String())
}

// digitRecords returns about size bytes of digit-dense JSON records: phone
// numbers, ids, amounts, dates, zip codes, order numbers.
func digitRecords(size int) []byte {
	r := rand.New(rand.NewPCG(3, 4))
	var b strings.Builder
	b.WriteString("[")
	for id := 0; b.Len() < size; id++ {
		if id > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, `{"id":%d,"order":"ORD-%08d","phone":"555-%03d-%04d","alt_phone":"+1 (555) %03d %04d",`,
			r.Int64N(1e12), r.IntN(1e8), r.IntN(1000), r.IntN(10000), r.IntN(1000), r.IntN(10000))
		fmt.Fprintf(&b, `"date":"2024-%02d-%02d","zip":"%05d","amounts":[%d.%02d,%d.%02d,-%d.%02d],"qty":%d,`,
			1+r.IntN(12), 1+r.IntN(28), r.IntN(100000), r.IntN(100000), r.IntN(100), r.IntN(1000), r.IntN(100), r.IntN(100), r.IntN(100), r.IntN(50))
		fmt.Fprintf(&b, `"ref":"%d-%d-%d","ts":"%s","lat":%.6f,"lon":%.6f}`,
			r.IntN(10000), r.IntN(10000), r.IntN(10000), timestamp(r), r.Float64()*180-90, r.Float64()*360-180)
	}
	b.WriteString("]")
	return []byte(b.String())
}

// request1K is a ~1 kB agent request holding one card and one email.
func request1K() []byte {
	return []byte(`{"task":"book_flight","trace":"550e8400-e29b-41d4-a716-446655440000",` +
		`"caller":{"agent_id":"travel-assistant","session":"b7c2f1d0-3a4e-4f8b-9c6d-1e2f3a4b5c6d"},` +
		`"passenger":{"name":"Alice Smith","email":"alice.smith@example.com","phone":"555-123-4567",` +
		`"loyalty":"GOLD-778812","birth_date":"1985-04-12"},` +
		`"itinerary":[{"from":"SFO","to":"CDG","date":"2025-06-01","flight":"AF083","class":"economy"},` +
		`{"from":"CDG","to":"SFO","date":"2025-06-15","flight":"AF084","class":"economy"}],` +
		`"payment":{"method":"card","card_number":"4532 0151 1283 0366","expiry":"09/27","amount":1234.50,"currency":"USD"},` +
		`"preferences":{"seat":"aisle","meal":"vegetarian","notes":"Please seat us together if possible, ` +
		`we are travelling with a small child and would appreciate an early boarding slot. Thank you!"},` +
		`"metadata":{"created_at":"2025-05-20T14:03:11Z","client":"agent-sdk/1.4.2","locale":"en-US",` +
		`"retries":0,"priority":"normal","tags":["travel","flight","booking","international"]}}`)
}

var (
	benchOnce            sync.Once
	benchMixed, benchDig []byte
	benchUnicode         []byte
)

func benchData() ([]byte, []byte) {
	benchOnce.Do(func() {
		benchMixed = mixedRecords(1 << 20)
		benchDig = digitRecords(1 << 20)
		// One name in ten ("Müller") with a no-break space and a
		// full-width digit: those strings, and a text holding them,
		// take the normalising path.
		benchUnicode = bytes.ReplaceAll(benchMixed, []byte("Müller"), []byte("M\u00fcller\u00a0３"))
	})
	return benchMixed, benchDig
}

// cpuMeter reports CPU time per operation and CPU throughput, which, unlike
// wall time, do not count the time other processes held the CPU.
type cpuMeter struct {
	b     *testing.B
	bytes int
	start time.Duration
}

func startCPU(b *testing.B, bytes int) *cpuMeter {
	b.SetBytes(int64(bytes))
	b.ReportAllocs()
	return &cpuMeter{b: b, bytes: bytes, start: cpuTime()}
}

func (m *cpuMeter) stop() {
	used := cpuTime() - m.start
	if used <= 0 || m.b.N == 0 {
		return
	}
	m.b.ReportMetric(float64(used.Nanoseconds())/float64(m.b.N), "cpu-ns/op")
	m.b.ReportMetric(float64(m.bytes)*float64(m.b.N)/used.Seconds()/1e6, "cpu-MB/s")
}

func benchScan(b *testing.B, doc []byte) {
	m := startCPU(b, len(doc))
	for b.Loop() {
		if _, err := ScanJSON(doc, Options{}); err != nil {
			b.Fatal(err)
		}
	}
	m.stop()
}

// BenchmarkDetect is ScanJSON over 1 MiB of ordinary JSON records.
func BenchmarkDetect(b *testing.B) {
	mixed, _ := benchData()
	benchScan(b, mixed)
}

// BenchmarkDetectDigits is ScanJSON over 1 MiB of digit-dense records.
func BenchmarkDetectDigits(b *testing.B) {
	_, dig := benchData()
	benchScan(b, dig)
}

// BenchmarkDetectUnicode is ScanJSON over the mixed records with a
// no-break space and a full-width digit in one name in ten.
func BenchmarkDetectUnicode(b *testing.B) {
	benchData()
	benchScan(b, benchUnicode)
}

// BenchmarkScanTextUnicode is ScanText over the same: the whole text is
// normalised.
func BenchmarkScanTextUnicode(b *testing.B) {
	benchData()
	m := startCPU(b, len(benchUnicode))
	for b.Loop() {
		ScanText(benchUnicode)
	}
	m.stop()
}

// BenchmarkScanText runs the detectors alone over the same 1 MiB, as text.
func BenchmarkScanText(b *testing.B) {
	mixed, _ := benchData()
	m := startCPU(b, len(mixed))
	for b.Loop() {
		ScanText(mixed)
	}
	m.stop()
}

// BenchmarkScrubJSON scrubs a 1 kB request holding one card and one email.
func BenchmarkScrubJSON(b *testing.B) {
	doc := request1K()
	dst := make([]byte, 0, 2*len(doc))
	m := startCPU(b, len(doc))
	for b.Loop() {
		out, s, err := ScrubJSON(dst[:0], doc, Options{})
		if err != nil || s != set(CreditCard, Email) {
			b.Fatal(s, err)
		}
		dst = out
	}
	m.stop()
}

// BenchmarkScanJSON1K scans the same 1 kB request.
func BenchmarkScanJSON1K(b *testing.B) {
	benchScan(b, request1K())
}

// BenchmarkRegexpBaseline runs the widely installed package's three
// patterns with Go's regexp over the 1 MiB of BenchmarkDetect.
func BenchmarkRegexpBaseline(b *testing.B) {
	mixed, _ := benchData()
	patterns := []*regexp.Regexp{
		regexp.MustCompile(`\b(?:\d{4}[-\s]?){3}\d{4}\b`),
		regexp.MustCompile(`\b\d{3}-\d{2}-\d{4}\b`),
		regexp.MustCompile(`\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Z|a-z]{2,}\b`),
	}
	m := startCPU(b, len(mixed))
	defer m.stop()
	for b.Loop() {
		found := 0
		for _, re := range patterns {
			if re.Match(mixed) {
				found++
			}
		}
		if found == 0 {
			b.Fatal("the baseline found no email")
		}
	}
}

// TestBenchData checks the generated data is what the benchmarks claim.
func TestBenchData(t *testing.T) {
	mixed, dig := benchData()
	for name, doc := range map[string][]byte{"mixed": mixed, "digits": dig} {
		if len(doc) < 1<<20 || len(doc) > 1<<20+4096 {
			t.Errorf("%s: %d bytes, want about 1 MiB", name, len(doc))
		}
		if _, err := ScanJSON(doc, Options{}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if s, _ := ScanJSON(mixed, Options{}); !s.Has(Email) {
		t.Errorf("mixed records: found %v, want at least email", s)
	}
	if s, err := ScanJSON(request1K(), Options{}); err != nil || s != set(CreditCard, Email) {
		t.Errorf("request1K: %v, %v; want credit_card,email", s, err)
	}
}
