package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Errors about the PostgreSQL client programs.
var (
	// ErrToolMissing is wrapped when a client program (pg_dump, pg_restore,
	// pg_basebackup, pg_verifybackup) cannot be found.
	ErrToolMissing = errors.New("backup: PostgreSQL client program not found")
	// ErrToolTooOld is wrapped when the only client programs found are
	// older than the server.
	ErrToolTooOld = errors.New("backup: PostgreSQL client program older than the server")
)

// ToolError explains which client program is missing or too old, and which
// version is needed.
type ToolError struct {
	Tool  string // e.g. "pg_dump"
	Need  int    // major version needed (the server's); 0 when any will do
	Found []Tool // the candidates that were found, if any
	Err   error  // ErrToolMissing or ErrToolTooOld
}

// Error says which program and version are needed, and how to get them.
func (e *ToolError) Error() string {
	need := "any version"
	if e.Need > 0 {
		need = fmt.Sprintf("version %d or newer (the server's major version)", e.Need)
	}
	var b strings.Builder
	if errors.Is(e.Err, ErrToolTooOld) {
		fmt.Fprintf(&b, "backup: %s is older than the server: need %s, found", e.Tool, need)
		for i, t := range e.Found {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, " %s (%s)", t.Version, t.Path)
		}
	} else {
		fmt.Fprintf(&b, "backup: %s not found: need %s", e.Tool, need)
	}
	if e.Need > 0 {
		fmt.Fprintf(&b, "; install the PostgreSQL %d client programs (Debian/Ubuntu: apt-get install postgresql-client-%d) or set Config.BinDir / --bindir", e.Need, e.Need)
	} else {
		b.WriteString("; install the PostgreSQL client programs or set Config.BinDir / --bindir")
	}
	return b.String()
}

// Unwrap returns ErrToolMissing or ErrToolTooOld.
func (e *ToolError) Unwrap() error { return e.Err }

// Tool is one located client program.
type Tool struct {
	Path    string
	Version string // as printed, e.g. "15.18"
	Major   int
}

var versionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)(?:\.(\d+))?`)

// ParseToolVersion extracts the version from the output of
// "pg_dump --version" (e.g. "pg_dump (PostgreSQL) 16.4 (Debian 16.4-1)").
func ParseToolVersion(out string) (version string, major int, err error) {
	m := versionRE.FindStringSubmatch(out)
	if m == nil {
		return "", 0, fmt.Errorf("backup: cannot read a PostgreSQL version from %q", strings.TrimSpace(out))
	}
	major, err = strconv.Atoi(m[1])
	if err != nil || major <= 0 {
		return "", 0, fmt.Errorf("backup: cannot read a PostgreSQL version from %q", strings.TrimSpace(out))
	}
	version = m[1]
	if m[2] != "" {
		version += "." + m[2]
	}
	if major < 10 && m[2] != "" {
		// 9.6 and older: the major version has two parts; treat as too old.
		major = 9
	}
	return version, major, nil
}

// FindTool locates client program name whose major version is at least
// need (0: any). With binDir set only that directory is searched; otherwise
// PATH and the usual installation directories (/usr/lib/postgresql/*/bin,
// /usr/pgsql-*/bin, /usr/local/pgsql/bin). A program of exactly the needed
// version is preferred, then the newest.
func FindTool(ctx context.Context, binDir, name string, need int) (Tool, error) {
	var paths []string
	if binDir != "" {
		paths = []string{filepath.Join(binDir, name)}
	} else {
		if p, err := exec.LookPath(name); err == nil {
			paths = append(paths, p)
		}
		for _, g := range []string{"/usr/lib/postgresql/*/bin/", "/usr/pgsql-*/bin/", "/usr/local/pgsql/bin/"} {
			m, _ := filepath.Glob(g + name)
			paths = append(paths, m...)
		}
	}
	var found []Tool
	seen := map[string]bool{}
	for _, p := range paths {
		if seen[p] {
			continue
		}
		seen[p] = true
		if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			continue
		}
		cmd := exec.CommandContext(ctx, p, "--version")
		var out bytes.Buffer
		cmd.Stdout = &out
		if cmd.Run() != nil {
			continue
		}
		v, major, err := ParseToolVersion(out.String())
		if err != nil {
			continue
		}
		found = append(found, Tool{Path: p, Version: v, Major: major})
	}
	if len(found) == 0 {
		return Tool{}, &ToolError{Tool: name, Need: need, Err: ErrToolMissing}
	}
	sort.SliceStable(found, func(i, j int) bool { return found[i].Major > found[j].Major })
	for _, t := range found {
		if t.Major == need {
			return t, nil
		}
	}
	if found[0].Major >= need {
		return found[0], nil
	}
	return Tool{}, &ToolError{Tool: name, Need: need, Found: found, Err: ErrToolTooOld}
}
