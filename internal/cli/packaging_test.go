package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/iatp/iatp/internal/config"
	"github.com/iatp/iatp/manifest"
	"github.com/iatp/iatp/sidecar"
)

// The packaging files (Dockerfile, the systemd unit, the Kubernetes
// example) run this command line; these tests keep them in step with it.

func repoFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", path))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// checkSidecarArgs fails unless args (after "sidecar") parse as flags of
// iatp sidecar, and returns the parsed flag values by name.
func checkSidecarArgs(t *testing.T, where string, args []string) map[string]string {
	t.Helper()
	cmd := newSidecarCmd(&streams{in: strings.NewReader(""), out: io.Discard, err: io.Discard})
	if err := cmd.ParseFlags(args); err != nil {
		t.Errorf("%s: %q are not flags of iatp sidecar: %v", where, args, err)
		return nil
	}
	if rest := cmd.Flags().Args(); len(rest) > 0 {
		t.Errorf("%s: iatp sidecar takes no arguments, got %q", where, rest)
	}
	vals := map[string]string{}
	for _, name := range []string{"config", "data-dir", "listen", "agent-url", "manifest", "log-format"} {
		vals[name] = cmd.Flags().Lookup(name).Value.String()
	}
	return vals
}

func TestDockerfile(t *testing.T) {
	data := repoFile(t, "Dockerfile")
	var stages, user, entrypoint, expose []string
	var build string
	sc := bufio.NewScanner(bytes.NewReader(bytes.ReplaceAll(data, []byte("\\\n"), nil)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		instr, rest, _ := strings.Cut(line, " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			stages = append(stages, rest)
		case "USER":
			user = append(user, rest)
		case "ENTRYPOINT":
			entrypoint = append(entrypoint, rest)
		case "EXPOSE":
			expose = append(expose, rest)
		case "RUN":
			if strings.Contains(rest, "go build") {
				build = rest
			}
		}
	}
	if len(stages) != 2 || !regexp.MustCompile(`^golang:1\.26\S* AS build$`).MatchString(stages[0]) {
		t.Errorf("stages %q: want golang:1.26 AS build, then the runtime", stages)
	}
	if len(stages) == 2 && stages[1] != "gcr.io/distroless/static-debian12:nonroot" && stages[1] != "scratch" {
		t.Errorf("runtime stage %q: want distroless static nonroot or scratch", stages[1])
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/iatp"} {
		if !strings.Contains(build, want) {
			t.Errorf("the go build step %q lacks %s", build, want)
		}
	}
	if len(user) != 1 || user[0] == "root" || user[0] == "0" || strings.HasPrefix(user[0], "0:") {
		t.Errorf("USER %q: want one non-root user", user)
	}
	var ep []string
	if len(entrypoint) != 1 || json.Unmarshal([]byte(entrypoint[0]), &ep) != nil || len(ep) != 1 || filepath.Base(ep[0]) != "iatp" {
		t.Errorf("ENTRYPOINT %q: want [\"…/iatp\"] in exec form", entrypoint)
	}
	_, port, _ := strings.Cut(sidecar.DefaultListen, ":")
	if len(expose) != 1 || expose[0] != port {
		t.Errorf("EXPOSE %q, want the sidecar's default port %s", expose, port)
	}

	// Build the image where a docker engine runs.
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("image not built: no docker command on this machine")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info").CombinedOutput(); err != nil {
		t.Skipf("image not built: no running docker engine (docker info: %v: %s)", err, problemLine(out))
	}
	if testing.Short() {
		t.Skip("image not built: -short")
	}
	ctx, cancel = context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	tag := "iatp-test:" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	if out, err := exec.CommandContext(ctx, "docker", "build", "-t", tag, filepath.Join("..", "..")).CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	defer exec.Command("docker", "rmi", "-f", tag).Run()
	out, err := exec.CommandContext(ctx, "docker", "run", "--rm", tag, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "iatp ") {
		t.Errorf("docker run %s version: %v %s", tag, err, out)
	}
}

// problemLine picks the line of docker's output that says what is wrong.
func problemLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for _, l := range lines {
		if strings.Contains(l, "Cannot connect") || strings.Contains(strings.ToLower(l), "error") {
			return strings.TrimSpace(l)
		}
	}
	return strings.TrimSpace(lines[len(lines)-1])
}

// unitFile is a parsed systemd unit: section → key → values in order.
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, data []byte) unitFile {
	t.Helper()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if u[section] != nil {
				t.Errorf("line %d: section [%s] twice", n, section)
			}
			u[section] = map[string][]string{}
		default:
			key, val, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.HasSuffix(line, "\\") {
				t.Errorf("line %d: %q is not key=value inside a section", n, line)
				continue
			}
			u[section][key] = append(u[section][key], val)
		}
	}
	return u
}

func (u unitFile) get(section, key string) string {
	vals := u[section][key]
	if len(vals) == 0 {
		return ""
	}
	return vals[len(vals)-1]
}

func TestSystemdUnit(t *testing.T) {
	const path = "examples/systemd/iatp-sidecar.service"
	data := repoFile(t, path)
	u := parseUnit(t, data)
	for _, s := range []string{"Unit", "Service", "Install"} {
		if u[s] == nil {
			t.Errorf("no [%s] section", s)
		}
	}
	for _, kv := range [][2]string{
		{"NoNewPrivileges", "yes"}, {"ProtectSystem", "strict"}, {"ProtectHome", "yes"}, {"PrivateTmp", "yes"},
		{"Restart", "on-failure"}, {"KillSignal", "SIGTERM"}, {"CapabilityBoundingSet", ""}, {"StateDirectory", "iatp"},
	} {
		if got, ok := u["Service"][kv[0]]; !ok || got[len(got)-1] != kv[1] {
			t.Errorf("[Service] %s=%q, want %q", kv[0], got, kv[1])
		}
	}
	if u.get("Service", "DynamicUser") != "yes" && u.get("Service", "User") == "" {
		t.Errorf("neither DynamicUser=yes nor User= is set")
	}
	if u.get("Install", "WantedBy") != "multi-user.target" {
		t.Errorf("WantedBy=%q", u.get("Install", "WantedBy"))
	}
	exe := strings.Fields(u.get("Service", "ExecStart"))
	if len(exe) < 2 || exe[0] != "/usr/local/bin/iatp" || exe[1] != "sidecar" {
		t.Fatalf("ExecStart=%q: want /usr/local/bin/iatp sidecar …", exe)
	}
	vals := checkSidecarArgs(t, "ExecStart", exe[2:])
	if want := "/var/lib/" + u.get("Service", "StateDirectory"); vals["data-dir"] != want {
		t.Errorf("--data-dir %q, want the state directory %s (the only place the service may write)", vals["data-dir"], want)
	}
	if stop, err := time.ParseDuration(u.get("Service", "TimeoutStopSec")); err != nil || stop <= sidecar.DefaultShutdownTimeout {
		t.Errorf("TimeoutStopSec=%q: want more than the sidecar's shutdown grace %s", u.get("Service", "TimeoutStopSec"), sidecar.DefaultShutdownTimeout)
	}

	// systemd's own check, where it is installed. ExecStart must name an
	// executable: this test binary stands in for iatp.
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze verify not run: systemd-analyze is not installed")
	}
	self, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	unit := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := os.WriteFile(unit, bytes.ReplaceAll(data, []byte("/usr/local/bin/iatp"), []byte(self)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(analyze, "verify", unit).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// k8sObject is the part of a Kubernetes object this test reads.
type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	StringData map[string]string `yaml:"stringData"`
	Data       map[string]string `yaml:"data"`
	Spec       struct {
		Replicas *int `yaml:"replicas"`
		Strategy struct {
			Type string `yaml:"type"`
		} `yaml:"strategy"`
		Template struct {
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
		Ports []struct {
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type podSpec struct {
	SecurityContext struct {
		RunAsNonRoot bool `yaml:"runAsNonRoot"`
		RunAsUser    int  `yaml:"runAsUser"`
	} `yaml:"securityContext"`
	Containers []container `yaml:"containers"`
	Volumes    []struct {
		Name      string `yaml:"name"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
		PersistentVolumeClaim *struct {
			ClaimName string `yaml:"claimName"`
		} `yaml:"persistentVolumeClaim"`
	} `yaml:"volumes"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

type container struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Env   []struct {
		Name      string `yaml:"name"`
		ValueFrom struct {
			SecretKeyRef struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe   *probe `yaml:"livenessProbe"`
	ReadinessProbe  *probe `yaml:"readinessProbe"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

func TestKubernetesExample(t *testing.T) {
	dec := yaml.NewDecoder(bytes.NewReader(repoFile(t, "examples/kubernetes/sidecar.yaml")))
	byKind := map[string]k8sObject{}
	for {
		var o k8sObject
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if o.Kind == "" {
			continue
		}
		if _, dup := byKind[o.Kind]; dup {
			t.Errorf("two %s objects", o.Kind)
		}
		byKind[o.Kind] = o
	}
	for _, kind := range []string{"Secret", "ConfigMap", "PersistentVolumeClaim", "Deployment", "Service"} {
		if _, ok := byKind[kind]; !ok {
			t.Errorf("no %s", kind)
		}
	}
	dep, secret, cm := byKind["Deployment"], byKind["Secret"], byKind["ConfigMap"]
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 1 || dep.Spec.Strategy.Type != "Recreate" {
		t.Errorf("one sidecar per data directory: want replicas 1 and strategy Recreate")
	}
	pod := dep.Spec.Template.Spec
	if !pod.SecurityContext.RunAsNonRoot || pod.SecurityContext.RunAsUser == 0 {
		t.Errorf("pod securityContext %+v: want runAsNonRoot and a non-zero runAsUser", pod.SecurityContext)
	}
	var iatp *container
	names := []string{}
	for i, c := range pod.Containers {
		names = append(names, c.Name)
		if c.Name == "iatp" {
			iatp = &pod.Containers[i]
		}
	}
	if len(pod.Containers) != 2 || iatp == nil {
		t.Fatalf("containers %q: want the agent and iatp", names)
	}
	for _, c := range pod.Containers {
		sc := c.SecurityContext
		if !sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
			t.Errorf("container %s securityContext %+v: want a read-only root, no privilege escalation, all capabilities dropped", c.Name, sc)
		}
	}

	// Probes on the sidecar's port, by name.
	if len(iatp.Ports) != 1 {
		t.Fatalf("iatp ports %+v", iatp.Ports)
	}
	port := iatp.Ports[0]
	for probe, want := range map[string]string{"liveness": "/healthz", "readiness": "/readyz"} {
		p := iatp.LivenessProbe
		if probe == "readiness" {
			p = iatp.ReadinessProbe
		}
		if p == nil || p.HTTPGet.Path != want || p.HTTPGet.Port != port.Name {
			t.Errorf("%s probe: want GET %s on port %s", probe, want, port.Name)
		}
	}
	if svc := byKind["Service"]; len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort != port.Name {
		t.Errorf("the Service must target the sidecar's port %s", port.Name)
	}

	// Tokens from the Secret, under the environment variables the sidecar reads.
	env := map[string]string{}
	for _, e := range iatp.Env {
		ref := e.ValueFrom.SecretKeyRef
		if ref.Name != secret.Metadata.Name {
			t.Errorf("env %s comes from secret %q, want %q", e.Name, ref.Name, secret.Metadata.Name)
		}
		if _, ok := secret.StringData[ref.Key]; !ok {
			t.Errorf("env %s: the Secret has no key %q", e.Name, ref.Key)
		}
		env[e.Name] = secret.StringData[ref.Key]
	}
	for _, name := range []string{"IATP_TRUSTED_USER_OVERRIDE_TOKEN", "IATP_ADMIN_TOKEN"} {
		if _, ok := env[name]; !ok {
			t.Errorf("the sidecar gets no %s", name)
		}
	}

	// The arguments, the mounted configuration and manifest start a sidecar.
	if len(iatp.Args) == 0 || iatp.Args[0] != "sidecar" {
		t.Fatalf("iatp args %q: want sidecar …", iatp.Args)
	}
	flags := checkSidecarArgs(t, "iatp args", iatp.Args[1:])
	mounts := map[string]string{}
	for _, m := range iatp.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	confDir := t.TempDir()
	for name, content := range cm.Data {
		if err := os.WriteFile(filepath.Join(confDir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rel, err := filepath.Rel(mounts["config"], flags["config"])
	if err != nil || strings.HasPrefix(rel, "..") {
		t.Fatalf("--config %s is not in the config volume mounted at %s", flags["config"], mounts["config"])
	}
	file, err := config.Load(filepath.Join(confDir, rel))
	if err != nil {
		t.Fatalf("the ConfigMap's configuration: %v", err)
	}
	if file.DataDir != mounts["data"] {
		t.Errorf("data_dir %q is not the data volume's mount path %q", file.DataDir, mounts["data"])
	}
	if _, portNum, _ := strings.Cut(file.Listen, ":"); portNum != "8001" || port.ContainerPort != 8001 {
		t.Errorf("listen %q and containerPort %d disagree", file.Listen, port.ContainerPort)
	}
	cfg, _, err := config.Resolve(file, confDir, func(k string) string { return env[k] }, config.Flags{})
	if err != nil {
		t.Fatalf("the configuration does not resolve: %v", err)
	}
	if f := cfg.Manifest.Findings(); f.Verdict() != manifest.VerdictValid || len(f.Warnings) > 0 {
		t.Errorf("the example manifest: %s, %q", f.Verdict(), f.All())
	}
}
