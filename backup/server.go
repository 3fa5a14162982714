package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ServerOptions says how to start and stop a server on a data directory
// with pg_ctl: the last step of point-in-time recovery after PreparePITR.
type ServerOptions struct {
	// BinDir is the directory of pg_ctl; empty looks for it on PATH and in
	// the usual installation directories (see FindTool).
	BinDir string
	// DataDir is the data directory, as laid out by PreparePITR.
	DataDir string
	// Port, when not zero, overrides the port in the data directory's
	// configuration (a base backup carries its primary's settings).
	Port int
	// SocketDir, when not empty, overrides unix_socket_directories.
	SocketDir string
	// Settings are more server settings (name → value) given on the
	// command line, such as max_connections when the primary ran with a
	// value higher than the data directory's configuration says: recovery
	// refuses lower settings than the primary's.
	Settings map[string]string
	// LogFile receives the server's log; empty means "startup.log" in
	// DataDir.
	LogFile string
	// Wait bounds how long pg_ctl waits for the server to accept
	// connections (a recovery replays WAL first). Zero means 10 minutes.
	Wait time.Duration
	// RunAs runs pg_ctl as UID/GID: PostgreSQL refuses to run as root, so
	// a process running as root starts it as the data directory's owner
	// (see PITROptions.Chown).
	RunAs    bool
	UID, GID int
}

// StartServer starts a PostgreSQL server on o.DataDir with pg_ctl and waits
// until it accepts connections. For a directory laid out by PreparePITR
// the server replays archived WAL up to the target; ConfirmRecovery then
// waits for the target and reports where recovery stopped. The server runs
// on after this process ends; StopServer stops it.
func StartServer(ctx context.Context, o ServerOptions) error {
	if o.DataDir == "" {
		return fmt.Errorf("%w: DataDir is required", ErrConfig)
	}
	if o.Port < 0 || o.Port > 65535 {
		return fmt.Errorf("%w: port %d", ErrConfig, o.Port)
	}
	logFile := o.LogFile
	if logFile == "" {
		logFile = filepath.Join(o.DataDir, "startup.log")
	}
	wait := o.Wait
	if wait <= 0 {
		wait = 10 * time.Minute
	}
	// pg_ctl hands -o to the server through a shell: every value is quoted.
	var opts []string
	if o.Port != 0 {
		opts = append(opts, "-p", strconv.Itoa(o.Port))
	}
	if o.SocketDir != "" {
		opts = append(opts, "-k", ShellQuote(o.SocketDir))
	}
	names := slices.Sorted(maps.Keys(o.Settings))
	for _, name := range names {
		if !settingRE.MatchString(name) {
			return fmt.Errorf("%w: setting name %q", ErrConfig, name)
		}
		opts = append(opts, "-c", ShellQuote(name+"="+o.Settings[name]))
	}
	args := []string{"start", "-w", "-t", strconv.Itoa(int(wait.Seconds())), "-D", o.DataDir, "-l", logFile}
	if len(opts) > 0 {
		args = append(args, "-o", strings.Join(opts, " "))
	}
	if err := pgCtl(ctx, o, args...); err != nil {
		log := &tailBuffer{max: 4 << 10}
		if f, ferr := os.Open(logFile); ferr == nil {
			_, _ = io.Copy(log, f)
			f.Close()
		}
		return fmt.Errorf("backup: starting the server on %s: %w\n%s", o.DataDir, err, log.String())
	}
	return nil
}

// settingRE is what a server setting's name looks like (extension settings
// have a prefix and a dot).
var settingRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`)

// StopServer stops the server running on o.DataDir (fast shutdown: open
// sessions are ended, nothing committed is lost).
func StopServer(ctx context.Context, o ServerOptions) error {
	if o.DataDir == "" {
		return fmt.Errorf("%w: DataDir is required", ErrConfig)
	}
	if err := pgCtl(ctx, o, "stop", "-w", "-m", "fast", "-D", o.DataDir); err != nil {
		return fmt.Errorf("backup: stopping the server on %s: %w", o.DataDir, err)
	}
	return nil
}

func pgCtl(ctx context.Context, o ServerOptions, args ...string) error {
	tool, err := FindTool(ctx, o.BinDir, "pg_ctl", 0)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, tool.Path, args...)
	if o.RunAs {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(o.UID), Gid: uint32(o.GID), NoSetGroups: true}}
	}
	cmd.Dir = os.TempDir() // a directory the server's user can enter
	out := &tailBuffer{max: 16 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return fmt.Errorf("pg_ctl %s: %w: %s", args[0], err, strings.TrimSpace(out.String()))
		}
		return err
	}
	return nil
}
