package cli

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestDocsMatchCommands reads the commands and flags that README.md and the
// operator docs show — in code blocks and `code spans` — and checks them
// against the command tree both ways: every command and flag documented
// exists, and every command and every flag of every command is documented
// somewhere. A flag counts for the command last named before it on the
// line (or on the lines a trailing backslash continues); in a document whose
// title names a command (docs/configuration.md: iatp sidecar), for that
// command by default. docs/PROTOCOL.md is the protocol, not this build's
// reference, and is left out.
func TestDocsMatchCommands(t *testing.T) {
	root := newRootCmd(&streams{in: strings.NewReader(""), out: &strings.Builder{}, err: &strings.Builder{}})
	root.InitDefaultHelpCmd()

	files := []string{filepath.Join("..", "..", "README.md")}
	docs, _ := filepath.Glob(filepath.Join("..", "..", "docs", "*.md"))
	for _, d := range docs {
		if filepath.Base(d) != "PROTOCOL.md" {
			files = append(files, d)
		}
	}
	seenCmd := map[*cobra.Command]bool{}
	seenFlag := map[*cobra.Command]map[string]bool{}
	for _, file := range files {
		readDoc(t, root, file, t.Errorf, func(where string, c *cobra.Command, flag string) {
			for p := c; p != nil; p = p.Parent() {
				seenCmd[p] = true // documenting iatp attest hash documents iatp attest
			}
			if flag == "" {
				return
			}
			f := lookupFlag(c, flag)
			if f == nil {
				if strings.HasPrefix(flag, "--") { // short ones may be another tool's (ss -ltnp)
					t.Errorf("%s: %s has no flag %s", where, c.CommandPath(), flag)
				}
				return
			}
			if seenFlag[c] == nil {
				seenFlag[c] = map[string]bool{}
			}
			seenFlag[c][f.Name] = true
		})
	}

	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" {
			return
		}
		if c != root && !seenCmd[c] {
			t.Errorf("%s is documented nowhere (README.md, docs/)", c.CommandPath())
		}
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if f.Name != "help" && !seenFlag[c][f.Name] {
				t.Errorf("%s --%s is documented nowhere (README.md, docs/)", c.CommandPath(), f.Name)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// TestDocsCheckCatchesMistakes checks that the documentation check finds a
// command and a flag that do not exist, and attributes flags as described.
func TestDocsCheckCatchesMistakes(t *testing.T) {
	root := newRootCmd(&streams{in: strings.NewReader(""), out: &strings.Builder{}, err: &strings.Builder{}})
	doc := filepath.Join(t.TempDir(), "doc.md")
	content := "# Title\n\nRun `iatp frobnicate` or `iatp verify --nope FILE`, then `iatp scan URL` with `--timeout 5s`.\n\n" +
		"```sh\n./iatp sidecar --agent-url http://x \\\n    --listen :8001 | grep --color x\n```\n"
	if err := os.WriteFile(doc, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	var problems, flags []string
	readDoc(t, root, doc, func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) },
		func(where string, c *cobra.Command, flag string) {
			if flag != "" {
				flags = append(flags, c.Name()+" "+flag)
			}
		})
	if len(problems) != 1 || !strings.HasSuffix(problems[0], "doc.md:3: iatp frobnicate is not a command") {
		t.Errorf("problems %q, want one: iatp frobnicate", problems)
	}
	if want := []string{"verify --nope", "scan --timeout", "sidecar --agent-url", "sidecar --listen"}; !slices.Equal(flags, want) {
		t.Errorf("flags %q, want %q", flags, want)
	}
}

// TestReadmeSampleAgent checks that the sample agent shown in README.md is
// the code of examples/echo-agent, which the tests build.
func TestReadmeSampleAgent(t *testing.T) {
	src := string(repoFile(t, "examples/echo-agent/main.go"))
	i := strings.Index(src, "func main() {")
	if i < 0 {
		t.Fatal("examples/echo-agent/main.go has no func main")
	}
	if !strings.Contains(string(repoFile(t, "README.md")), "```go\n"+src[i:]+"```") {
		t.Errorf("README.md does not show func main of examples/echo-agent/main.go as it is")
	}
}

// lookupFlag finds a flag given as "--name", "--name=value" or "-x".
func lookupFlag(c *cobra.Command, token string) *pflag.Flag {
	if name, ok := strings.CutPrefix(token, "--"); ok {
		name, _, _ = strings.Cut(name, "=")
		if f := c.Flags().Lookup(name); f != nil {
			return f
		}
		if f := c.InheritedFlags().Lookup(name); f != nil {
			return f
		}
		if name == "help" || (name == "version" && c == c.Root()) {
			return &pflag.Flag{Name: name}
		}
		return nil
	}
	short := strings.TrimPrefix(token, "-")
	if len(short) != 1 {
		return nil // -ltnp and the like: another tool's flags
	}
	return c.Flags().ShorthandLookup(short)
}

var (
	reCodeSpan = regexp.MustCompile("`([^`]+)`")
	reFlag     = regexp.MustCompile(`^--?[a-zA-Z][a-zA-Z0-9-]*(=.*)?$`)
	reWord     = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
)

// readDoc calls found for every command mention (flag "") and every flag
// it can attribute to a command in the markdown file, and bad for a
// mention of a command that does not exist.
func readDoc(t *testing.T, root *cobra.Command, file string, bad func(format string, args ...any), found func(where string, c *cobra.Command, flag string)) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	name := strings.TrimPrefix(file, filepath.Join("..", "..")+string(filepath.Separator))
	var fileCmd, cont []*cobra.Command
	inFence := false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		where := name + ":" + strconv.Itoa(n)
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inFence = !inFence
			cont = nil
			continue
		}
		var segments []string
		if inFence {
			segments = []string{line}
		} else {
			for _, m := range reCodeSpan.FindAllStringSubmatch(line, -1) {
				segments = append(segments, m[1])
			}
		}
		cur := fileCmd
		if cont != nil {
			cur = cont
		}
		cont = nil
		for _, seg := range segments {
			tokens := strings.Fields(strings.ReplaceAll(seg, `\|`, "|")) // a | escaped in a table
			for i := 0; i < len(tokens); i++ {
				tok := strings.Trim(tokens[i], "[](),|…")
				switch {
				case tokens[i] == "|" || tokens[i] == "&&" || tokens[i] == ";" || tokens[i] == "&":
					cur = fileCmd
				case tok == "iatp" || strings.HasSuffix(tok, "/iatp"):
					cmds, used := resolveCommand(root, tokens[i+1:])
					if used == 0 {
						if (tok == "iatp" || tok == "./iatp") && i+1 < len(tokens) && reWord.MatchString(tokens[i+1]) && !strings.HasPrefix(line, "#") {
							bad("%s: iatp %s is not a command", where, tokens[i+1])
						}
						if tok != "iatp" && tok != "./iatp" {
							continue
						}
					}
					cur = cmds
					for _, c := range cmds {
						found(where, c, "")
					}
					i += used
				case reFlag.MatchString(tok):
					for _, c := range cur {
						found(where, c, tok)
					}
				}
			}
		}
		if strings.HasPrefix(line, "# ") && cur != nil && fileCmd == nil {
			fileCmd = cur // the title names the document's command
		}
		if inFence && strings.HasSuffix(strings.TrimSpace(line), "\\") {
			cont = cur
		}
	}
}

// resolveCommand walks down the tree along words, returning the deepest
// commands reached — several for alternatives, as in "iatp completion
// bash|zsh|fish" — and the number of words used.
func resolveCommand(root *cobra.Command, words []string) ([]*cobra.Command, int) {
	cmds, used := []*cobra.Command{root}, 0
	for _, w := range words {
		var next []*cobra.Command
		for _, alt := range strings.Split(strings.Trim(w, "`[](),.…"), "|") {
			for _, c := range cmds {
				for _, sub := range c.Commands() {
					if sub.Name() == alt || sub.HasAlias(alt) {
						next = append(next, sub)
					}
				}
			}
		}
		if len(next) == 0 {
			break
		}
		cmds, used = next, used+1
	}
	return cmds, used
}
