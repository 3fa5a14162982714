// Command justpg-backup takes, proves, prunes and restores PostgreSQL
// backups with the justpg backup package. Put it in cron (see the README),
// and in archive_command / restore_command.
//
//	justpg-backup dump        --db URL --repo DIR [--format custom|directory] [--jobs N] [--compress zstd]
//	justpg-backup list        --repo DIR [--db URL]
//	justpg-backup verify      --repo DIR ID
//	justpg-backup drill       --db URL --repo DIR [--id ID] [--drill-db URL]
//	justpg-backup prune       --db URL --repo DIR --daily 7 --weekly 4 --monthly 6 [--dry-run]
//	justpg-backup basebackup  --db URL (--repo DIR [--gzip] | --dir DIR) [--no-verify]
//	justpg-backup list-base   --repo DIR
//	justpg-backup restore-base --repo DIR ID DIR
//	justpg-backup prune-base  --repo DIR --daily 0 --weekly 4 --monthly 3
//	justpg-backup verify-base DIR | --repo DIR ID
//	justpg-backup sweep-drills --db URL [--drill-db URL] [--max-age 24h]
//	justpg-backup archive-wal --repo DIR %p %f
//	justpg-backup restore-wal --repo DIR %f %p
//	justpg-backup configure-archiving --db URL --repo DIR
//	justpg-backup archiver-status     --db URL [--max-age 1h]
//	justpg-backup pitr        --base DIR --data DIR --repo DIR [--target TIME] [--action promote]
//
// --db defaults to $DATABASE_URL. Exit status: 0 success, 1 failure
// (including a failed drill or an unhealthy archiver), 2 usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/justpg/justpg/backup"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: justpg-backup <command> [flags]

commands:
  dump                 take a logical backup (pg_dump) with a snapshot-consistent manifest
  list                 list the backups in a repository
  verify ID            check a backup's files against its manifest (SHA-256)
  drill                restore a backup into a temporary database and compare row counts
  prune                delete backups outside the retention policy (never the last good one)
  basebackup           take a physical base backup (pg_basebackup), into the repository or a directory, and verify it
  list-base            list the base backups in a repository
  restore-base ID DIR  unpack a stored base backup into a data directory (checking SHA-256)
  prune-base           delete base backups outside the retention policy (never the last good one)
  verify-base DIR|ID   verify a base backup (a directory, or --repo and an ID) with pg_verifybackup
  sweep-drills         drop temporary databases left by crashed drills
  archive-wal %p %f    archive_command: archive one WAL file
  restore-wal %f %p    restore_command: fetch one archived WAL file
  configure-archiving  turn on WAL archiving with this program (ALTER SYSTEM)
  archiver-status      report WAL archiving health from pg_stat_archiver
  pitr                 lay out a data directory for point-in-time recovery

run "justpg-backup <command> -h" for the flags of a command
`

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		_, _ = io.WriteString(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c := &cli{out: stdout, errw: stderr}
	cmds := map[string]func(context.Context, []string) error{
		"dump": c.dump, "list": c.list, "verify": c.verify, "drill": c.drill, "prune": c.prune,
		"basebackup": c.basebackup, "verify-base": c.verifyBase, "archive-wal": c.archiveWAL,
		"restore-wal": c.restoreWAL, "configure-archiving": c.configureArchiving,
		"archiver-status": c.archiverStatus, "pitr": c.pitr, "list-base": c.listBase,
		"restore-base": c.restoreBase, "prune-base": c.pruneBase, "sweep-drills": c.sweepDrills,
	}
	fn, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "justpg-backup: unknown command %q\n\n", args[0])
		_, _ = io.WriteString(stderr, usage)
		return 2
	}
	err := fn(ctx, args[1:])
	var ue usageError
	switch {
	case err == nil:
		return 0
	case args[0] == "restore-wal" && errors.Is(err, backup.ErrNotFound):
		// PostgreSQL asks for files that may not exist (the next timeline's
		// history, the segment after the last one): a non-zero status is
		// the expected answer, not worth a log line each time.
		return 1
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "justpg-backup %s: %s\n", args[0], ue.msg)
		return 2
	default:
		fmt.Fprintf(stderr, "justpg-backup %s: %v\n", args[0], err)
		return 1
	}
}

type cli struct {
	out, errw io.Writer
}

// common flags
type opts struct {
	fs       *flag.FlagSet
	db       *string
	repo     *string
	bindir   *string
	quiet    *bool
	needDB   bool
	needRepo bool
}

// repoCommand parses the flags of a sub-command that needs only the
// repository, checks it got nargs arguments (any number when nargs < 0),
// and opens the repository.
func (c *cli) repoCommand(name string, args []string, nargs int, usage string) (*opts, *backup.DirRepository, error) {
	o := c.flags(name, false, true)
	if err := o.parse(args); err != nil {
		return nil, nil, err
	}
	if nargs >= 0 && o.fs.NArg() != nargs {
		return nil, nil, usageError{usage}
	}
	repo, err := backup.NewDirRepository(*o.repo)
	if err != nil {
		return nil, nil, err
	}
	return o, repo, nil
}

func (c *cli) flags(name string, needDB, needRepo bool) *opts {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.errw)
	o := &opts{fs: fs, needDB: needDB, needRepo: needRepo}
	o.db = fs.String("db", os.Getenv("DATABASE_URL"), "connection string of the database (default $DATABASE_URL)")
	o.repo = fs.String("repo", "", "backup repository directory")
	o.bindir = fs.String("bindir", "", "directory of the PostgreSQL client programs (default: PATH and /usr/lib/postgresql/*/bin, matching the server)")
	o.quiet = fs.Bool("quiet", false, "no progress output")
	return o
}

func (o *opts) parse(args []string) error {
	if err := o.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if o.needDB && *o.db == "" {
		return usageError{"--db (or DATABASE_URL) is required"}
	}
	if o.needRepo && *o.repo == "" {
		return usageError{"--repo is required"}
	}
	return nil
}

func (c *cli) progress(quiet bool) func(backup.Progress) {
	if quiet {
		return nil
	}
	last := time.Time{}
	return func(p backup.Progress) {
		if time.Since(last) < time.Second {
			return
		}
		last = time.Now()
		fmt.Fprintf(c.errw, "  %s %s: %s\n", p.Op, p.ID, human(p.Bytes))
	}
}

func (c *cli) manager(ctx context.Context, o *opts, cfg backup.Config) (*backup.Manager, func(), error) {
	repo, err := backup.NewDirRepository(*o.repo)
	if err != nil {
		return nil, nil, err
	}
	pool, err := pgxpool.New(ctx, *o.db)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting: %w", err)
	}
	cfg.Repository = repo
	cfg.BinDir = *o.bindir
	cfg.Progress = c.progress(*o.quiet)
	m, err := backup.New(pool, cfg)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return m, pool.Close, nil
}

func (c *cli) dump(ctx context.Context, args []string) error {
	o := c.flags("dump", true, true)
	format := o.fs.String("format", "custom", "custom or directory")
	jobs := o.fs.Int("jobs", 1, "parallel jobs (directory format)")
	compress := o.fs.String("compress", "", "zstd, gzip, lz4 or none, with an optional :level (default zstd when pg_dump >= 16)")
	if err := o.parse(args); err != nil {
		return err
	}
	m, done, err := c.manager(ctx, o, backup.Config{Format: backup.Format(*format), Jobs: *jobs, Compression: *compress})
	if err != nil {
		return err
	}
	defer done()
	man, err := m.Dump(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "dump %s of %s: %s in %d file(s), %d tables, %d rows, %s, sha256 %s\n",
		man.ID, man.Database, human(man.Size), len(man.Files), len(man.Tables), man.TotalRows(),
		man.Finished.Sub(man.Started).Round(time.Millisecond), man.SHA256)
	return nil
}

func (c *cli) list(ctx context.Context, args []string) error {
	o, repo, err := c.repoCommand("list", args, -1, "")
	if err != nil {
		return err
	}
	all, err := backup.ListBackups(ctx, repo)
	if err != nil {
		return err
	}
	db := ""
	if *o.db != "" {
		p, err := backup.ParseConnString(*o.db)
		if err != nil {
			return usageError{err.Error()}
		}
		db = p["dbname"]
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDATABASE\tSTARTED\tSIZE\tROWS\tLAST DRILL")
	n := 0
	for _, b := range all {
		if db != "" && b.Database != db {
			continue
		}
		n++
		drill := "never"
		if d := b.LastDrill; d != nil {
			drill = "FAILED " + d.At.Format(time.RFC3339)
			if d.Passed {
				drill = fmt.Sprintf("passed %s (restore %s)", d.At.Format(time.RFC3339), d.Restore.Round(time.Millisecond))
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", b.ID, b.Database, b.Started.Format(time.RFC3339), human(b.Size), b.TotalRows(), drill)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "%d backup(s)\n", n)
	return nil
}

func (c *cli) verify(ctx context.Context, args []string) error {
	o, repo, err := c.repoCommand("verify", args, 1, "want one backup ID")
	if err != nil {
		return err
	}
	man, err := backup.VerifyBackup(ctx, repo, o.fs.Arg(0))
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "verified %s: %d file(s), %s, sha256 %s\n", man.ID, len(man.Files), human(man.Size), man.SHA256)
	return nil
}

func (c *cli) drill(ctx context.Context, args []string) error {
	o := c.flags("drill", true, true)
	id := o.fs.String("id", "", "backup to drill (default: the newest of the database)")
	drillDB := o.fs.String("drill-db", "", "server to restore on (default: the database's server)")
	jobs := o.fs.Int("jobs", 1, "parallel restore jobs")
	if err := o.parse(args); err != nil {
		return err
	}
	m, done, err := c.manager(ctx, o, backup.Config{DrillConnString: *drillDB, Jobs: *jobs})
	if err != nil {
		return err
	}
	defer done()
	rep, err := m.Drill(ctx, *id)
	if err != nil {
		for _, mm := range rep.Mismatches {
			fmt.Fprintf(c.out, "  mismatch: %s\n", mm)
		}
		fmt.Fprintf(c.out, "drill %s FAILED\n", rep.ID)
		return err
	}
	fmt.Fprintf(c.out, "drill %s passed: %d tables, %d rows match the manifest; restore (RTO) %s, counting after it %s (SHA-256 verified alongside in %s)\n",
		rep.ID, rep.Tables, rep.Rows, rep.Restore.Round(time.Millisecond), rep.Count.Round(time.Millisecond), rep.Verify.Round(time.Millisecond))
	return nil
}

func (c *cli) prune(ctx context.Context, args []string) error {
	o := c.flags("prune", true, true)
	daily := o.fs.Int("daily", 7, "daily backups to keep")
	weekly := o.fs.Int("weekly", 4, "weekly backups to keep")
	monthly := o.fs.Int("monthly", 6, "monthly backups to keep")
	dry := o.fs.Bool("dry-run", false, "only show what would be deleted")
	if err := o.parse(args); err != nil {
		return err
	}
	m, done, err := c.manager(ctx, o, backup.Config{})
	if err != nil {
		return err
	}
	defer done()
	pol := backup.Retention{Daily: *daily, Weekly: *weekly, Monthly: *monthly}
	if *dry {
		list, err := m.List(ctx)
		if err != nil {
			return err
		}
		keep, remove, err := pol.Plan(list)
		if err != nil {
			return err
		}
		for _, b := range remove {
			fmt.Fprintf(c.out, "would delete %s\n", b.ID)
		}
		fmt.Fprintf(c.out, "dry run: keep %d, delete %d\n", len(keep), len(remove))
		return nil
	}
	rep, err := m.Prune(ctx, pol)
	for _, b := range rep.Removed {
		fmt.Fprintf(c.out, "deleted %s\n", b.ID)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "pruned: kept %d, deleted %d\n", len(rep.Kept), len(rep.Removed))
	return nil
}

func (c *cli) basebackup(ctx context.Context, args []string) error {
	o := c.flags("basebackup", true, false)
	dir := o.fs.String("dir", "", "target directory for a plain base backup (must not exist or be empty)")
	gz := o.fs.Bool("gzip", false, "compress the tar files (with --repo)")
	noVerify := o.fs.Bool("no-verify", false, "skip the verification with pg_verifybackup")
	if err := o.parse(args); err != nil {
		return err
	}
	if (*dir == "") == (*o.repo == "") {
		return usageError{"want --repo (stored in the repository) or --dir (a plain directory)"}
	}
	if *o.repo != "" {
		repo, err := backup.NewDirRepository(*o.repo)
		if err != nil {
			return err
		}
		man, err := backup.StoreBaseBackup(ctx, repo, backup.BaseBackupOptions{ConnString: *o.db, BinDir: *o.bindir, Compress: *gz})
		if err != nil {
			return err
		}
		fmt.Fprintf(c.out, "base backup %s: %s in %d file(s) in %s\n", man.ID, human(man.Size), len(man.Files), man.Finished.Sub(man.Started).Round(time.Millisecond))
		if *noVerify {
			return nil
		}
		if err := backup.VerifyStoredBaseBackup(ctx, repo, man.ID, *o.bindir, ""); err != nil {
			return err
		}
		fmt.Fprintln(c.out, "verified: unpacked and checked with pg_verifybackup")
		return nil
	}
	info, err := backup.BaseBackup(ctx, backup.BaseBackupOptions{ConnString: *o.db, Dir: *dir, BinDir: *o.bindir})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "base backup in %s: %s in %s\n", info.Dir, human(info.Size), info.Finished.Sub(info.Started).Round(time.Millisecond))
	if *noVerify {
		return nil
	}
	if err := backup.VerifyBaseBackup(ctx, *o.bindir, *dir); err != nil {
		return err
	}
	fmt.Fprintln(c.out, "verified with pg_verifybackup")
	return nil
}

func (c *cli) verifyBase(ctx context.Context, args []string) error {
	o := c.flags("verify-base", false, false)
	if err := o.parse(args); err != nil {
		return err
	}
	if o.fs.NArg() != 1 {
		return usageError{"want the base backup directory, or --repo and a base backup ID"}
	}
	if *o.repo != "" {
		repo, err := backup.NewDirRepository(*o.repo)
		if err != nil {
			return err
		}
		if err := backup.VerifyStoredBaseBackup(ctx, repo, o.fs.Arg(0), *o.bindir, ""); err != nil {
			return err
		}
	} else if err := backup.VerifyBaseBackup(ctx, *o.bindir, o.fs.Arg(0)); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "%s verified\n", o.fs.Arg(0))
	return nil
}

func (c *cli) listBase(ctx context.Context, args []string) error {
	_, repo, err := c.repoCommand("list-base", args, 0, "takes no arguments")
	if err != nil {
		return err
	}
	list, err := backup.ListBaseBackups(ctx, repo)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSERVER\tSTARTED\tSIZE\tLAST VERIFY")
	for _, b := range list {
		v := "never"
		if r := b.LastVerify; r != nil {
			v = "FAILED " + r.At.Format(time.RFC3339)
			if r.Passed {
				v = "passed " + r.At.Format(time.RFC3339)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", b.ID, b.ServerVersion, b.Started.Format(time.RFC3339), human(b.Size), v)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "%d base backup(s)\n", len(list))
	return nil
}

func (c *cli) restoreBase(ctx context.Context, args []string) error {
	o, repo, err := c.repoCommand("restore-base", args, 2, "want a base backup ID and a target directory")
	if err != nil {
		return err
	}
	man, err := backup.RestoreBaseBackup(ctx, repo, o.fs.Arg(0), o.fs.Arg(1))
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "base backup %s unpacked into %s (%s checked)\n", man.ID, o.fs.Arg(1), human(man.Size))
	return nil
}

func (c *cli) pruneBase(ctx context.Context, args []string) error {
	o := c.flags("prune-base", false, true)
	daily := o.fs.Int("daily", 0, "daily base backups to keep")
	weekly := o.fs.Int("weekly", 4, "weekly base backups to keep")
	monthly := o.fs.Int("monthly", 3, "monthly base backups to keep")
	if err := o.parse(args); err != nil {
		return err
	}
	repo, err := backup.NewDirRepository(*o.repo)
	if err != nil {
		return err
	}
	kept, removed, err := backup.PruneBaseBackups(ctx, repo, backup.Retention{Daily: *daily, Weekly: *weekly, Monthly: *monthly})
	for _, b := range removed {
		fmt.Fprintf(c.out, "deleted %s\n", b.ID)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "pruned: kept %d, deleted %d\n", len(kept), len(removed))
	return nil
}

func (c *cli) sweepDrills(ctx context.Context, args []string) error {
	o := c.flags("sweep-drills", true, false)
	drillDB := o.fs.String("drill-db", "", "server the drills restore on (default: the database's server)")
	maxAge := o.fs.Duration("max-age", backup.DefaultDrillMaxAge, "drop drill databases older than this that nobody uses")
	if err := o.parse(args); err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, *o.db)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer pool.Close()
	// The repository is not used; any directory will do.
	repo, err := backup.NewDirRepository(os.TempDir())
	if err != nil {
		return err
	}
	m, err := backup.New(pool, backup.Config{Repository: repo, DrillConnString: *drillDB})
	if err != nil {
		return err
	}
	dropped, err := m.SweepDrills(ctx, *maxAge)
	for _, d := range dropped {
		fmt.Fprintf(c.out, "dropped %s\n", d)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "%d stale drill database(s) dropped\n", len(dropped))
	return nil
}

func (c *cli) archiveWAL(ctx context.Context, args []string) error {
	o, repo, err := c.repoCommand("archive-wal", args, 2, "want %p %f")
	if err != nil {
		return err
	}
	return backup.ArchiveWAL(ctx, repo, o.fs.Arg(0), o.fs.Arg(1))
}

func (c *cli) restoreWAL(ctx context.Context, args []string) error {
	o, repo, err := c.repoCommand("restore-wal", args, 2, "want %f %p")
	if err != nil {
		return err
	}
	return backup.RestoreWAL(ctx, repo, o.fs.Arg(0), o.fs.Arg(1))
}

func self() (string, error) {
	p, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(p)
}

func (c *cli) configureArchiving(ctx context.Context, args []string) error {
	o := c.flags("configure-archiving", true, true)
	bin := o.fs.String("bin", "", "path of justpg-backup as the server sees it (default: this program)")
	if err := o.parse(args); err != nil {
		return err
	}
	if *bin == "" {
		p, err := self()
		if err != nil {
			return err
		}
		*bin = p
	}
	repoDir, err := filepath.Abs(*o.repo)
	if err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, *o.db)
	if err != nil {
		return err
	}
	defer pool.Close()
	cmd := backup.ArchiveCommand(*bin, repoDir)
	restart, err := backup.ConfigureArchiving(ctx, pool, cmd)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "archive_command = %s\n", cmd)
	if restart {
		fmt.Fprintln(c.out, "archive_mode was off: RESTART the server for archiving to start")
	}
	fmt.Fprintln(c.out, "the server's user must be able to write", repoDir)
	return nil
}

func (c *cli) archiverStatus(ctx context.Context, args []string) error {
	o := c.flags("archiver-status", true, false)
	maxAge := o.fs.Duration("max-age", 0, "fail when no segment was archived for this long (0: not checked)")
	if err := o.parse(args); err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, *o.db)
	if err != nil {
		return err
	}
	defer pool.Close()
	st, err := backup.CheckArchiver(ctx, pool, *maxAge)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "archive_mode %s, archived %d (last %s at %s), failed %d (last %s at %s)\n",
		st.ArchiveMode, st.ArchivedCount, orNone(st.LastArchivedWAL), when(st.LastArchivedTime),
		st.FailedCount, orNone(st.LastFailedWAL), when(st.LastFailedTime))
	if !st.Healthy {
		for _, p := range st.Problems {
			fmt.Fprintf(c.out, "  problem: %s\n", p)
		}
		return errors.New("WAL archiving is unhealthy")
	}
	fmt.Fprintln(c.out, "healthy")
	return nil
}

func (c *cli) pitr(ctx context.Context, args []string) error {
	o := c.flags("pitr", false, true)
	base := o.fs.String("base", "", "base backup directory")
	data := o.fs.String("data", "", "data directory to create")
	target := o.fs.String("target", "", "recovery target time, RFC 3339 (e.g. 2026-11-27T14:46:00Z); empty: end of the archive")
	action := o.fs.String("action", "promote", "promote, pause or shutdown at the target")
	bin := o.fs.String("bin", "", "path of justpg-backup as the server sees it (default: this program)")
	if err := o.parse(args); err != nil {
		return err
	}
	if *base == "" || *data == "" {
		return usageError{"--base and --data are required"}
	}
	var t time.Time
	if *target != "" {
		var err error
		if t, err = time.Parse(time.RFC3339Nano, *target); err != nil {
			return usageError{"--target: " + err.Error()}
		}
	}
	if *bin == "" {
		p, err := self()
		if err != nil {
			return err
		}
		*bin = p
	}
	repoDir, err := filepath.Abs(*o.repo)
	if err != nil {
		return err
	}
	err = backup.PreparePITR(ctx, backup.PITROptions{BaseBackup: *base, DataDir: *data,
		RestoreCommand: backup.RestoreCommand(*bin, repoDir), TargetTime: t, TargetAction: *action})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "data directory %s is ready for recovery", *data)
	if !t.IsZero() {
		fmt.Fprintf(c.out, " to %s", t.UTC().Format(time.RFC3339Nano))
	}
	fmt.Fprintf(c.out, "\nchown it to the server's user, start the server on it (pg_ctl -D %s start) and check that it was promoted\n", *data)
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func when(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for v := n / unit; v >= unit; v /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
