// Package backup takes PostgreSQL backups and proves them by restoring them:
// logical dumps with pg_dump, physical base backups with pg_basebackup, WAL
// archiving done the way PostgreSQL's documentation requires, and
// point-in-time recovery. It replaces a managed backup service (and
// compares with pgBackRest, WAL-G and Barman) with this package plus the
// small justpg-backup command (cmd/justpg-backup) in cron.
//
// "Your backups are probably broken. You just don't know it yet." Every
// logical backup here carries a manifest with the exact row count of every
// table, counted in the very snapshot pg_dump used, and Drill restores it
// into a temporary database and compares. The outcome goes to a callback
// you wire to alerting, and is recorded next to the backup so that
// retention never deletes the last backup that is known to be good.
//
// # Which method when
//
// WAL archiving is the common thread: turn it on first (ConfigureArchiving,
// or justpg-backup configure-archiving), watch it (CheckArchiver), and every
// base backup becomes a starting point from which any moment since can be
// recovered. On top of that:
//
//   - Under about 5 GB: a daily logical dump (Manager.Dump, custom format)
//     and a drill after each. A dump restores anywhere — another major
//     version, another machine, a single table — and drills of this size
//     take minutes. Add weekly base backups if you archive WAL and want
//     point-in-time recovery.
//   - 5 to 50 GB: dumps in directory format with parallel jobs
//     (Config{Format: FormatDirectory, Jobs: 4}) still work and keep their
//     portability, but restores take long enough that a weekly base backup
//     plus WAL archiving becomes the main recovery path (minutes of data
//     loss at most, restore time independent of the number of indexes).
//     Keep the dumps for portability and drill them weekly.
//   - Over 50 GB: physical backups are the backups: BaseBackup weekly (or
//     a dedicated tool with incremental backups such as pgBackRest), WAL
//     archiving continuously, and regular PITR drills into a scratch
//     cluster. Logical dumps become an occasional extra (a schema, a few
//     tables), not the recovery plan.
//
// # Logical backups
//
// New takes the *pgxpool.Pool of the database to back up and a Config whose
// only required field is the Repository: NewDirRepository(dir) for a local
// directory (any store can be added behind the Repository interface).
// Manager.Dump opens a REPEATABLE READ transaction, exports its snapshot,
// runs pg_dump --snapshot and counts every table in that transaction while
// the dump runs, so the counts match the dump exactly while the application
// keeps writing. pg_dump's output streams through a SHA-256 hasher into the
// repository; files are written to a temporary name, fsynced, linked into
// place (never overwriting) and the directory fsynced; the manifest is
// written last. A pg_dump that fails or is killed, a full disk, or a
// cancelled context leave no backup behind and touch no existing one.
//
// Manager.Drill checks first that every file is there with its size and a
// pg_dump header (a truncated, emptied or deleted dump fails with
// ErrChecksum before anything is restored), restores with pg_restore
// --exit-on-error into a temporary database and, while pg_restore runs,
// checks every file's SHA-256 (a mismatch cancels the restore and fails
// the drill with ErrChecksum) and counts each table as soon as pg_restore
// has loaded it, on two connections of its own; then it compares tables
// and exact row counts with the manifest, measures the restore time (the
// recovery time you can actually promise), drops the temporary database
// and reports through Config.OnDrill. With two or more cores the proof
// costs little time on top of the restore itself: in bench/backup, a few
// tens of milliseconds after pg_restore ended for 5.9 M rows, and 1.6 %
// in all over raw pg_dump + pg_restore. Temporary databases carry
// their start time in their name (justpg_drill_<unix time>_<random>);
// Manager.SweepDrills (run by every drill) drops those of drills that
// crashed, old enough and with nobody connected, so it is safe while
// other drills run. Manager.Prune applies a grandfather-father-son
// Retention (N daily, M weekly, K monthly).
//
// The client programs are looked up in Config.BinDir, else PATH and
// /usr/lib/postgresql/*/bin, preferring the server's major version; a
// missing or older pg_dump is a *ToolError naming the version needed.
//
// The Manager owns no tables and runs no migrations: manifests live in the
// repository next to the dumps, so a backup can be read without the
// database it came from. Dumps and row counts run with row_security off,
// so a role that RLS would restrict gets an error instead of a silently
// partial backup: back up with the table owner or a role with BYPASSRLS.
//
// # WAL archiving and point-in-time recovery
//
// ArchiveWAL and RestoreWAL are the archive_command and restore_command
// (justpg-backup archive-wal --repo DIR %p %f, restore-wal --repo DIR %f %p;
// ArchiveCommand and RestoreCommand build them): a temporary copy, fsync,
// atomic exclusive link into place; an identical file already archived is a
// success (PostgreSQL retries after crashes), a different one fails with
// ErrWALConflict and is kept; temporary files left by a crash never count
// as archived.
//
// StoreBaseBackup runs pg_basebackup (tar format, WAL streamed, SHA-256
// backup manifest) and stores its files in the repository under base/<id>/
// with a BaseManifest written last; VerifyStoredBaseBackup unpacks one
// (checking every file's SHA-256) and runs pg_verifybackup on it, recording
// the outcome; PruneBaseBackups applies the same Retention, never deleting
// the newest good one; RestoreBaseBackup unpacks one into a data directory.
// BaseBackup and VerifyBaseBackup do the same with a plain directory
// outside any repository. PreparePITR lays out a data directory from a
// base backup with recovery.signal, restore_command, recovery_target_time
// and recovery_target_action; a target before the base backup is refused
// with ErrTargetBeforeBackup.
// StartServer starts it with pg_ctl (as the data directory's owner when
// running as root, with command-line settings such as the port), and
// ConfirmRecovery waits until it is promoted (or paused) at the target;
// StopServer stops it.
//
// # Scheduling
//
// With the justpg jobs package, Manager.PeriodicJobs registers the workers
// and returns the periodic jobs: every night Dump, Drill of that dump and
// Prune; every week StoreBaseBackup, VerifyStoredBaseBackup and
// PruneBaseBackups. The jobs leader inserts each slot once however many
// instances run; OnDrill raises the alert. Run them on a pool whose role
// bypasses row-level security (a dump must see every row), not on the
// application's tenant-scoped pool.
//
// Without it, cron does:
//
//	# daily dump + drill at 02:15, weekly base backup, daily prune
//	15 2 * * *  justpg-backup dump --quiet --repo /backups && justpg-backup drill --quiet --repo /backups
//	30 3 * * 0  justpg-backup basebackup --repo /backups --gzip && justpg-backup prune-base --repo /backups --weekly 4
//	45 4 * * *  justpg-backup prune --repo /backups --daily 7 --weekly 4 --monthly 6
//	*/5 * * * * justpg-backup archiver-status --max-age 30m || alert "WAL archiving"
//
// with DATABASE_URL in cron's environment. Every command exits non-zero on
// failure (a failed drill included), which cron mails or your wrapper
// alerts on.
package backup
