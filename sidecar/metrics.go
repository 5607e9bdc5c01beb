package sidecar

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the sidecar's Prometheus metrics, in a registry of its own so
// that several sidecars can live in one process.
type metrics struct {
	reg       *prometheus.Registry
	decisions *prometheus.CounterVec // by outcome
	blocked   *prometheus.CounterVec // by rule
	refused   *prometheus.CounterVec // by status, before the policy ran
	upstream  *prometheus.CounterVec // agent answers by status class, or error kind
	latency   prometheus.Histogram   // agent latency to response headers
	recorded  prometheus.Counter     // recorder failures
	stage     *prometheus.HistogramVec
	egress    *prometheus.CounterVec   // egress calls by answer class or failure
	stageObs  [2][]prometheus.Observer // by exchange kind, resolved once, in the pipeline's order

	// The egress proxy's decisions, kept apart from the ingress's.
	egressDecisions *prometheus.CounterVec // by outcome
	egressBlocked   *prometheus.CounterVec // by rule
	egressRefused   *prometheus.CounterVec // by status

	// Resolved once: WithLabelValues hashes its labels on every call.
	answers  [6]prometheus.Counter // by status/100; 0 for anything outside 1xx–5xx
	outcomes map[string]prometheus.Counter
}

// answer counts an agent's answer by status class.
func (m *metrics) answer(status int) {
	c := status / 100
	if c < 1 || c > 5 {
		c = 0
	}
	m.answers[c].Inc()
}

// decided counts a decision: allow, warn, block or override.
func (m *metrics) decided(outcome string) {
	if c, ok := m.outcomes[outcome]; ok {
		c.Inc()
		return
	}
	m.decisions.WithLabelValues(outcome).Inc()
}

func newMetrics(agentID string) *metrics {
	labels := prometheus.Labels{"agent_id": agentID}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "iatp", Name: "decisions_total",
			Help: "Requests decided by the policy, by outcome (allow, warn, block, override).", ConstLabels: labels}, []string{"outcome"}),
		blocked: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "iatp", Name: "blocked_total",
			Help: "Requests blocked, by rule.", ConstLabels: labels}, []string{"rule"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "iatp", Name: "refused_total",
			Help: "Requests refused before the policy ran, by HTTP status.", ConstLabels: labels}, []string{"status"}),
		upstream: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "iatp", Name: "agent_responses_total",
			Help: "Answers of the agent, by status class (2xx…) or failure (timeout, error).", ConstLabels: labels}, []string{"class"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "iatp", Name: "agent_latency_seconds",
			Help: "Time from forwarding a request to the agent's response headers.", ConstLabels: labels,
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}),
		recorded: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "iatp", Name: "recorder_failures_total",
			Help: "Records the flight recorder could not write.", ConstLabels: labels}),
		egress: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "iatp", Name: "egress_calls_total",
			Help: "Calls of this agent to others through the egress proxy, by answer class (2xx…) or failure.", ConstLabels: labels}, []string{"result"}),
		stage: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "iatp", Name: "stage_seconds",
			Help: "Time spent in each check of the request pipeline, by exchange (ingress, egress) and check (forward includes the answer).", ConstLabels: labels,
			Buckets: []float64{1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, .025, .1, 1}}, []string{"exchange", "stage"}),
		egressDecisions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "iatp", Name: "egress_decisions_total",
			Help: "This agent's calls to others decided by the egress policy, by outcome (allow, warn, block, override).", ConstLabels: labels}, []string{"outcome"}),
		egressBlocked: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "iatp", Name: "egress_blocked_total",
			Help: "This agent's calls to others blocked, by rule.", ConstLabels: labels}, []string{"rule"}),
		egressRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "iatp", Name: "egress_refused_total",
			Help: "This agent's calls to others refused before the egress policy ran, by HTTP status.", ConstLabels: labels}, []string{"status"}),
	}
	m.answers[0] = m.upstream.WithLabelValues("other")
	for c := 1; c <= 5; c++ {
		m.answers[c] = m.upstream.WithLabelValues(string(rune('0'+c)) + "xx")
	}
	m.outcomes = map[string]prometheus.Counter{}
	for _, o := range []string{"allow", "warn", "block", "override"} {
		m.outcomes[o] = m.decisions.WithLabelValues(o)
	}
	m.reg.MustRegister(m.decisions, m.blocked, m.refused, m.upstream, m.latency, m.recorded, m.stage, m.egress, m.egressDecisions, m.egressBlocked, m.egressRefused,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// setStages resolves the stage histograms of a pipeline's checks; egress
// says which pipeline.
func (m *metrics) setStages(egress bool, names []string) {
	k, label := 0, "ingress"
	if egress {
		k, label = 1, "egress"
	}
	m.stageObs[k] = make([]prometheus.Observer, len(names))
	for i, n := range names {
		m.stageObs[k][i] = m.stage.WithLabelValues(label, n)
	}
}

// stages observes the time an exchange spent in each check it ran.
func (m *metrics) stages(egress bool, d []time.Duration) {
	obs := m.stageObs[0]
	if egress {
		obs = m.stageObs[1]
	}
	if len(d) != len(obs) {
		return // a pipeline whose stages are not registered (CONNECT)
	}
	for i, t := range d {
		if t != 0 {
			obs[i].Observe(t.Seconds())
		}
	}
}
