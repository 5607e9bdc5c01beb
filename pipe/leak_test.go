package pipe

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// TestNoGoroutineOutlivesTheRun runs a pipeline with a fan-out and a
// fan-in inside a synctest bubble, fills every buffer, and ends it each
// way: synctest.Test fails when a goroutine of the bubble is left behind,
// blocked for good.
func TestNoGoroutineOutlivesTheRun(t *testing.T) {
	for _, tt := range []struct {
		name string
		end  func(cancel context.CancelFunc, run *Run[string, Draft])
	}{
		{"cancelled while full", func(cancel context.CancelFunc, run *Run[string, Draft]) { cancel() }},
		{"closed, then cancelled without reading", func(cancel context.CancelFunc, run *Run[string, Draft]) {
			run.Close()
			time.Sleep(time.Second)
			cancel()
		}},
		{"closed and drained", func(cancel context.CancelFunc, run *Run[string, Draft]) {
			run.Close()
			for range run.Results() {
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				slow := func(id string) Stage[Note, Review] {
					return NewStage(agent(id), func(ctx context.Context, n Note) (Review, error) {
						select {
						case <-time.After(time.Minute):
						case <-ctx.Done():
							return Review{}, ctx.Err()
						}
						return Review{By: id, Note: n.Topic}, nil
					}).WithWorkers(2)
				}
				cfg := config(t, &memRecorder{})
				cfg.Buffer, cfg.SendTimeout = 2, time.Second
				run, err := Open(ctx, cfg, FanIn(FanOut(From(researcher), slow("c1"), slow("c2")), editor))
				if err != nil {
					t.Fatal(err)
				}
				full := false
				for i := 0; i < 50 && !full; i++ {
					_, err := run.Send(context.Background(), fmt.Sprint(i))
					full = errors.Is(err, ErrTimeout)
				}
				if !full {
					t.Fatal("the buffers never filled")
				}
				tt.end(cancel, run)
				run.Wait()
				if _, err := run.Send(context.Background(), "late"); !errors.Is(err, ErrClosed) {
					t.Errorf("Send after the end = %v", err)
				}
			})
		})
	}
}
