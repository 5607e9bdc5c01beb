package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/iatp/iatp/internal/wire"
)

// StageTime is the mean time a target's sidecars spent in one check of the
// pipeline during a measured window, from the iatp_stage_seconds histogram:
// the difference of its sum over the difference of its count.
type StageTime struct {
	Exchange string  `json:"exchange"` // ingress or egress
	Stage    string  `json:"stage"`
	MeanUs   float64 `json:"mean_us"`
	Count    uint64  `json:"count"` // checks run in the window
}

// stageKey names one series of iatp_stage_seconds, summed over agents.
type stageKey struct{ exchange, stage string }

type stageTotals struct {
	sum   float64
	count uint64
}

// stageOrder is the pipeline's order of checks (pipeline/order.go), for
// the report; a stage not listed sorts after these, by name.
var stageOrder = []string{
	"headers", "route", "egress_route", "body", "identify", "rate_limit", "parse", "detect",
	"discover", "policy", "override", "sign", "record", "forward",
}

// maxMetricsBytes bounds a /metrics answer the harness reads.
const maxMetricsBytes = 8 << 20

// scrapeStages reads iatp_stage_seconds from every URL and adds the series
// up by exchange and stage.
func scrapeStages(ctx context.Context, urls []string) (map[stageKey]stageTotals, error) {
	out := map[stageKey]stageTotals{}
	client := &http.Client{Timeout: 5 * time.Second}
	for _, u := range urls {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("scrape %s: %w", u, err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("scrape %s: %s", u, resp.Status)
		}
		body, err := wire.ReadAll(resp.Body, maxMetricsBytes)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("scrape %s: %w", u, err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("scrape %s: %w", u, err)
		}
		fam := families["iatp_stage_seconds"]
		if fam == nil {
			continue
		}
		for _, m := range fam.GetMetric() {
			h := m.GetHistogram()
			if h == nil {
				continue
			}
			k := stageKey{label(m, "exchange"), label(m, "stage")}
			t := out[k]
			t.sum += h.GetSampleSum()
			t.count += h.GetSampleCount()
			out[k] = t
		}
	}
	return out, nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// stageDelta returns the mean of every stage that ran between two scrapes,
// ingress first, each exchange in the pipeline's order.
func stageDelta(before, after map[stageKey]stageTotals) []StageTime {
	var out []StageTime
	for k, a := range after {
		b := before[k]
		if a.count <= b.count {
			continue
		}
		n := a.count - b.count
		out = append(out, StageTime{Exchange: k.exchange, Stage: k.stage, Count: n, MeanUs: (a.sum - b.sum) / float64(n) * 1e6})
	}
	slices.SortFunc(out, func(x, y StageTime) int {
		if c := strings.Compare(orderOfExchange(x.Exchange), orderOfExchange(y.Exchange)); c != 0 {
			return c
		}
		if c := stageRank(x.Stage) - stageRank(y.Stage); c != 0 {
			return c
		}
		return strings.Compare(x.Stage, y.Stage)
	})
	return out
}

// orderOfExchange sorts ingress before egress, then the rest by name.
func orderOfExchange(e string) string {
	switch e {
	case "ingress":
		return "0"
	case "egress":
		return "1"
	}
	return "2" + e
}

func stageRank(s string) int {
	if i := slices.Index(stageOrder, s); i >= 0 {
		return i
	}
	return math.MaxInt16
}
