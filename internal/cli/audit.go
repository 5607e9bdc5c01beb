package cli

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/internal/config"
	"github.com/iatp/iatp/recorder"
)

// exitWrongKey is the exit status of audit verify when every record and
// checkpoint holds but the checkpoints are signed by a key other than the
// --key given: not tampering in itself, so not exitFail.
const exitWrongKey = 3

func newAuditCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify and read the flight recorder (the sidecar's audit log)",
		Long: `Verify and read the flight recorder: the append-only, hash-chained log of
every request, decision and answer a sidecar recorded.

Every subcommand reads the sidecar's data directory, given with --data-dir
(default ` + config.DefaultDataDir + `, the sidecar's default); the log is in
DIR/recorder. A recorder directory itself (for example a recovered-*
directory that --recorder-recover set aside) is accepted too. Every
subcommand prints JSON with --json. They read without the sidecar's lock, so
they work next to a running sidecar, on plain and compressed segments alike.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newAuditVerifyCmd(s), newAuditShowCmd(s), newAuditTailCmd(s))
	return cmd
}

// addDataDirFlag adds --data-dir, with the sidecar's default, to an audit
// subcommand.
func addDataDirFlag(cmd *cobra.Command, dir *string) {
	cmd.Flags().StringVar(dir, "data-dir", config.DefaultDataDir, "the sidecar's data directory (the log is in DIR/recorder)")
}

// recorderDir finds the recorder directory for a data dir (or a recorder
// directory given directly).
func recorderDir(dir string) (string, error) {
	if dir == "" {
		return "", usagef("--data-dir is empty: give the sidecar's data directory")
	}
	sub := filepath.Join(dir, "recorder")
	if fi, err := os.Stat(sub); err == nil && fi.IsDir() {
		return sub, nil
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "seg-*.log*"))
	if _, err := os.Stat(filepath.Join(dir, "checkpoints.jsonl")); len(segs) > 0 || err == nil {
		return dir, nil
	}
	return "", usagef("no flight recorder in %s (looked for %s): give the sidecar's data directory with --data-dir", dir, sub)
}

// parseAuditKey reads a public key given as a file or inline
// ("ed25519:<base64>", raw base64, or PEM).
func parseAuditKey(v string) (ed25519.PublicKey, error) {
	if _, err := os.Stat(v); err == nil {
		return identity.ReadPublicKeyFile(v)
	}
	return identity.ParsePublicKey(v)
}

func newAuditVerifyCmd(s *streams) *cobra.Command {
	var keys []string
	var dataDir string
	var requireCheckpoint, asJSON bool
	cmd := &cobra.Command{
		Use:   "verify [--data-dir DIR] [--key PUBKEY]... [--require-checkpoint] [--json]",
		Short: "Check that nobody edited, deleted, reordered or truncated the log",
		Long: `Check every record of the flight recorder in DIR/recorder: its hash, its link
to the previous record, its sequence number, the segment file names, where
the chain starts (seq 1, a recovery, or the point retention removed up to),
and every signed checkpoint (signature, order, and the record it names; the
log must reach the newest checkpoint, so cutting its tail is caught).

--key gives the checkpoint public keys to trust (a file, or inline
"ed25519:<base64>"); without it each checkpoint is checked against the key
it carries, which proves it is intact but not who signed it.

"iatp audit verify DIR" (the directory as an argument) still works and means
--data-dir DIR.

Exit status: 0 when every link and checkpoint holds; 1 naming the first
record that was altered, deleted, reordered or cut off, or a damaged
checkpoint; 2 when DIR holds no log or an argument is wrong; 3 when
everything holds but the checkpoints are signed by a key other than --key.`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) > 1:
				return usagef("audit verify takes at most one directory (got %d arguments); use --data-dir DIR", len(args))
			case len(args) == 1 && cmd.Flags().Changed("data-dir") && args[0] != dataDir:
				return usagef("two data directories given (%s and --data-dir %s): give one", args[0], dataDir)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				dataDir = args[0]
			}
			dir, err := recorderDir(dataDir)
			if err != nil {
				return err
			}
			opts := recorder.VerifyOptions{RequireCheckpoint: requireCheckpoint}
			for _, k := range keys {
				pub, err := parseAuditKey(k)
				if err != nil {
					return usagef("--key %s: %v: give a public key file or \"ed25519:<base64>\"", k, err)
				}
				opts.TrustedKeys = append(opts.TrustedKeys, pub)
			}
			rep, err := recorder.Verify(cmd.Context(), dir, opts)
			var ve *recorder.VerifyError
			var ke *recorder.KeyError
			switch {
			case errors.Is(err, recorder.ErrNoLog):
				return usagef("no flight recorder log in %s: give the sidecar's data directory with --data-dir", dir)
			case err != nil && !errors.As(err, &ve) && !errors.As(err, &ke):
				return failf("verifying %s: %v", dir, err)
			}
			if asJSON {
				if err := encodeAuditJSON(s.out, rep); err != nil {
					return err
				}
				switch {
				case ve != nil:
					return silentFail
				case ke != nil:
					return &exitError{code: exitWrongKey, err: errors.New("")}
				}
				return nil
			}
			switch {
			case ve != nil:
				fmt.Fprintf(s.out, "FAILED %s\n  %s: %s\n", dir, problemSentence(ve), ve.Detail)
				fmt.Fprintf(s.out, "  %d records before it verified.\n", rep.Records)
				fmt.Fprintf(s.out, "Keep this directory as evidence. A sidecar refuses to start on it unless run\n"+
					"with --recorder-recover, which moves it aside and starts a new chain.\n")
				return failf("%s (%s): keep %s as evidence", problemSentence(ve), ve.Problem, dir)
			case ke != nil:
				fmt.Fprintf(s.out, "KEY MISMATCH %s\n  every record and checkpoint is intact, but the checkpoint at seq %d is signed by\n"+
					"  key id %q (%s), which is not the --key given.\n", dir, ke.Seq, ke.KeyID, ke.PublicKey)
				fmt.Fprintf(s.out, "Check --key. If it is the sidecar's checkpoint key, someone rewrote this log and\n"+
					"signed it again with another key: keep the directory as evidence.\n")
				return &exitError{code: exitWrongKey, err: fmt.Errorf("the checkpoints are signed by a different key (key id %s): check --key", ke.KeyID)}
			}
			printVerifyReport(s.out, rep)
			return nil
		},
	}
	addDataDirFlag(cmd, &dataDir)
	cmd.Flags().StringArrayVar(&keys, "key", nil, "trusted checkpoint public key: a file or \"ed25519:<base64>\" (repeatable)")
	cmd.Flags().BoolVar(&requireCheckpoint, "require-checkpoint", false, "fail when the log has no signed checkpoint")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the verification report as JSON")
	return cmd
}

// problemSentence says what a verification failure means for the record it
// names.
func problemSentence(ve *recorder.VerifyError) string {
	switch ve.Problem {
	case recorder.ProblemEdited:
		return fmt.Sprintf("record %d in segment %s was altered", ve.Seq, ve.Segment)
	case recorder.ProblemDeleted:
		return fmt.Sprintf("record %d was deleted (missing before segment %s continues the chain)", ve.Seq, ve.Segment)
	case recorder.ProblemReordered:
		return fmt.Sprintf("record %d in segment %s is out of order", ve.Seq, ve.Segment)
	case recorder.ProblemTruncated:
		return fmt.Sprintf("the log was cut short: record %d on is missing from segment %s", ve.Seq, ve.Segment)
	case recorder.ProblemCheckpoint:
		return fmt.Sprintf("a checkpoint in %s is damaged or out of order (seq %d)", ve.Segment, ve.Seq)
	}
	return fmt.Sprintf("segment %s, seq %d: %s", ve.Segment, ve.Seq, ve.Problem)
}

func printVerifyReport(w io.Writer, rep *recorder.VerifyReport) {
	fmt.Fprintf(w, "OK %s\n", rep.Dir)
	if rep.Records == 0 {
		fmt.Fprintf(w, "  no records yet\n")
	} else {
		fmt.Fprintf(w, "  %d records, seq %d to %d, in %d segments (%d bytes of records, %d on disk",
			rep.Records, rep.FirstSeq, rep.LastSeq, rep.Segments, rep.Bytes, rep.DiskBytes)
		if rep.CompressedSegments > 0 {
			fmt.Fprintf(w, "; %d segments compressed", rep.CompressedSegments)
		}
		fmt.Fprintf(w, ")\n")
	}
	switch rep.ChainStart {
	case "genesis":
		fmt.Fprintf(w, "  chain starts at seq 1\n")
	case "recovery":
		fmt.Fprintf(w, "  chain starts at seq %d with a recovery record: an earlier log failed verification and was set aside\n", rep.FirstSeq)
	case "retention":
		fmt.Fprintf(w, "  chain starts at seq %d: older segments were removed by retention (%d retention records)\n", rep.FirstSeq, rep.Retentions)
	}
	switch {
	case rep.LastCheckpoint == nil:
		fmt.Fprintf(w, "  no signed checkpoint: cutting records off the end of the log would not be detected\n")
	case rep.CheckpointsTrusted:
		fmt.Fprintf(w, "  %s, the newest at seq %d (%s), signed by a trusted key\n",
			checkpointsHold(rep.Checkpoints), rep.LastCheckpoint.Seq, rep.LastCheckpoint.Time.Format(time.RFC3339))
	default:
		fmt.Fprintf(w, "  %s, the newest at seq %d (%s), checked against the key they carry\n"+
			"  (pass --key to check who signed them)\n",
			checkpointsHold(rep.Checkpoints), rep.LastCheckpoint.Seq, rep.LastCheckpoint.Time.Format(time.RFC3339))
	}
	if rep.TornTailBytes > 0 {
		fmt.Fprintf(w, "  warning: %d bytes after the last whole record: a write in progress, or a crash mid-write\n"+
			"  (the sidecar cuts them at start-up)\n", rep.TornTailBytes)
	}
	for _, d := range rep.Recovered {
		fmt.Fprintf(w, "  note: %s holds a log set aside by --recorder-recover; verify it with: iatp audit verify --data-dir %s\n",
			d, filepath.Join(rep.Dir, d))
	}
}

// checkpointsHold says how many checkpoints held.
func checkpointsHold(n int) string {
	if n == 1 {
		return "1 checkpoint holds"
	}
	return fmt.Sprintf("%d checkpoints hold", n)
}

func encodeAuditJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newAuditShowCmd(s *streams) *cobra.Command {
	var dataDir string
	var asJSON bool
	var limit int
	cmd := &cobra.Command{
		Use:   "show TRACE_ID [--data-dir DIR] [--json] [--limit N]",
		Short: "Show the recorded events of one trace",
		Long: `Show the records of one trace, in order, from the flight recorder in
DIR/recorder (DIR is --data-dir, default ` + config.DefaultDataDir + `). Every record shown was checked
against its hash.

Exit status: 0 when the trace has records, 1 when it has none or a record
fails its hash, 2 on bad arguments or when DIR holds no log.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("audit show needs one TRACE_ID (got %d arguments)", len(args))
			}
			id := args[0]
			if !recorder.ValidTraceID(id) {
				return usagef("trace id %q is not 1-128 characters of [A-Za-z0-9._:-]", id)
			}
			if limit < 0 {
				return usagef("--limit %d is negative", limit)
			}
			r, err := openRecorderReader(dataDir)
			if err != nil {
				return err
			}
			defer r.Close()
			recs, err := r.Trace(cmd.Context(), id, limit)
			if err != nil {
				return failf("reading trace %s: %v: run iatp audit verify --data-dir %s", id, err, dataDir)
			}
			if asJSON {
				if recs == nil {
					recs = []recorder.Record{}
				}
				if err := encodeAuditJSON(s.out, map[string]any{"trace_id": id, "records": recs}); err != nil {
					return err
				}
				if len(recs) == 0 {
					return silentFail
				}
				return nil
			}
			if len(recs) == 0 {
				return failf("no records for trace %s in %s: check the trace id (the X-Agent-Trace-ID header of the answer)", id, dataDir)
			}
			fmt.Fprintf(s.out, "trace %s: %d records\n", id, len(recs))
			for _, rec := range recs {
				printRecordBlock(s.out, &rec)
			}
			return nil
		},
	}
	addDataDirFlag(cmd, &dataDir)
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"trace_id","records":[…]} as JSON`)
	cmd.Flags().IntVar(&limit, "limit", 0, fmt.Sprintf("at most this many records (0: %d)", recorder.DefaultTraceLimit))
	return cmd
}

// printRecordBlock prints one record over several indented lines.
func printRecordBlock(w io.Writer, r *recorder.Record) {
	fmt.Fprintf(w, "\n#%d  %s  %s", r.Seq, r.Time.Format(time.RFC3339Nano), r.Kind)
	if r.Decision != "" {
		fmt.Fprintf(w, "  %s", r.Decision)
	}
	fmt.Fprintln(w)
	who := "agent " + r.AgentID
	if r.CallerID != "" {
		who += "  caller " + r.CallerID
	}
	var flags []string
	if r.Authenticated {
		flags = append(flags, "authenticated")
	}
	if r.Attested {
		flags = append(flags, "attested")
	}
	if len(flags) > 0 {
		who += " (" + strings.Join(flags, ", ") + ")"
	}
	fmt.Fprintf(w, "    %s\n", who)
	if r.Status != 0 || r.LatencyMs != 0 {
		fmt.Fprintf(w, "    status %d  latency %g ms\n", r.Status, r.LatencyMs)
	}
	if len(r.Reasons) > 0 {
		fmt.Fprintf(w, "    reasons: %s\n", strings.Join(r.Reasons, "; "))
	}
	if len(r.Payload) > 0 {
		fmt.Fprintf(w, "    payload: %s\n", r.Payload)
	}
	if len(r.Details) > 0 {
		fmt.Fprintf(w, "    details: %s\n", r.Details)
	}
}

// recordLine formats a record on one line for tail.
func recordLine(r *recorder.Record) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  #%d  %-13s", r.Time.Format(time.RFC3339Nano), r.Seq, r.Kind)
	if r.TraceID != "" {
		fmt.Fprintf(&b, "  trace=%s", r.TraceID)
	}
	if r.AgentID != "" {
		fmt.Fprintf(&b, "  agent=%s", r.AgentID)
	}
	if r.CallerID != "" {
		fmt.Fprintf(&b, "  caller=%s", r.CallerID)
	}
	if r.Decision != "" {
		fmt.Fprintf(&b, "  %s", r.Decision)
	}
	if r.Status != 0 {
		fmt.Fprintf(&b, "  %d", r.Status)
	}
	if r.LatencyMs != 0 {
		fmt.Fprintf(&b, "  %gms", r.LatencyMs)
	}
	if len(r.Reasons) > 0 {
		fmt.Fprintf(&b, "  reasons: %s", strings.Join(r.Reasons, "; "))
	}
	if len(r.Details) > 0 && r.Kind != recorder.KindRequest && r.Kind != recorder.KindResponse {
		fmt.Fprintf(&b, "  %s", r.Details)
	}
	return b.String()
}

// recordJSON is a record as stored: encoding/json without HTML escaping
// writes exactly the recorder's line.
func recordJSON(r *recorder.Record) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func newAuditTailCmd(s *streams) *cobra.Command {
	var dataDir string
	var n int
	var follow, asJSON bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "tail [--data-dir DIR] [-n N] [-f] [--json]",
		Short: "Print the newest records, and follow new ones with -f",
		Long: `Print the newest records of the flight recorder in DIR/recorder (DIR is
--data-dir, default ` + config.DefaultDataDir + `), oldest first, one per line. With -f, keep printing records as the sidecar appends
them (across segment rotations) until interrupted. --json prints each record
as the JSON line stored in the log.

Exit status: 0, 1 when a record fails its hash, 2 on bad arguments or when
DIR holds no log.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 0 {
				return usagef("audit tail takes no arguments (got %d): give the directory with --data-dir DIR", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if n < 0 || n > recorder.MaxTail {
				return usagef("-n %d is outside 0..%d", n, recorder.MaxTail)
			}
			if interval <= 0 {
				return usagef("--interval %v must be positive", interval)
			}
			r, err := openRecorderReader(dataDir)
			if err != nil {
				return err
			}
			defer r.Close()
			emit := func(rec recorder.Record) error {
				if asJSON {
					line, err := recordJSON(&rec)
					if err != nil {
						return err
					}
					_, err = s.out.Write(line)
					return err
				}
				_, err := fmt.Fprintln(s.out, recordLine(&rec))
				return err
			}
			recs, cur, err := r.Tail(cmd.Context(), n)
			if err != nil {
				return failf("reading the newest records: %v: run iatp audit verify --data-dir %s", err, dataDir)
			}
			for _, rec := range recs {
				if err := emit(rec); err != nil {
					return failf("%v", err)
				}
			}
			if !follow {
				return nil
			}
			if err := r.Follow(cmd.Context(), cur, interval, emit); err != nil {
				return failf("following new records: %v: run iatp audit verify --data-dir %s", err, dataDir)
			}
			return nil
		},
	}
	addDataDirFlag(cmd, &dataDir)
	cmd.Flags().IntVarP(&n, "lines", "n", 10, "how many of the newest records to print first")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new records until interrupted")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print each record as its stored JSON line")
	cmd.Flags().DurationVar(&interval, "interval", 200*time.Millisecond, "how often -f looks for new records")
	return cmd
}

// openRecorderReader opens the flight recorder of a data dir for reading,
// mapping a missing log to a usage error.
func openRecorderReader(dataDir string) (*recorder.Reader, error) {
	dir, err := recorderDir(dataDir)
	if err != nil {
		return nil, err
	}
	r, err := recorder.OpenReader(dir)
	if errors.Is(err, recorder.ErrNoLog) {
		return nil, usagef("no flight recorder log in %s: give the sidecar's data directory with --data-dir", dir)
	}
	if err != nil {
		return nil, failf("opening the flight recorder in %s: %v: run iatp audit verify --data-dir %s", dir, err, dataDir)
	}
	return r, nil
}
