// Command gocheck drives clickhouse-go v2 over HTTP (what Grafana's ClickHouse data source uses)
// against the embedded endpoint with the driver's default settings.
//
// Usage: gocheck HOST:PORT USER PASSWORD DATABASE. Prints one "check<TAB>result" line per check;
// tests/tweetflow/test_analyst_clients.py asserts on them. A failing check prints "ERROR ..." as
// its result instead of stopping the others.
package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

func main() {
	addr, user, password, database := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	opts := &clickhouse.Options{
		Addr:     []string{addr},
		Protocol: clickhouse.HTTP,
		Auth:     clickhouse.Auth{Database: database, Username: user, Password: password},
	}
	ctx := context.Background()
	conn, err := clickhouse.Open(opts)
	if err != nil {
		report("open", "", err)
		return
	}
	defer conn.Close()
	report("ping", "ok", conn.Ping(ctx))
	version, err := conn.ServerVersion()
	if err == nil {
		report("server_version", fmt.Sprintf("%d.%d", version.Version.Major, version.Version.Minor), nil)
	} else {
		report("server_version", "", err)
	}

	var bound uint64
	err = conn.QueryRow(clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters{"n": "41"})),
		"SELECT {n:UInt64} + 1").Scan(&bound)
	report("server_param", fmt.Sprint(bound), err)

	var arr []string
	var ts time.Time
	err = conn.QueryRow(ctx, "SELECT ['a', 'b', ?], toDateTime64('2024-01-02 03:04:05.678', 3, 'UTC')",
		"it's").Scan(&arr, &ts)
	report("array_and_datetime64", fmt.Sprintf("%q %s", arr, ts.UTC().Format(time.RFC3339Nano)), err)

	db := clickhouse.OpenDB(opts)
	defer db.Close()
	report("sql_ping", "ok", db.PingContext(ctx))
	report("sql_rows", sqlRows(ctx, db), nil)
	var many int
	err = db.QueryRowContext(ctx, "SELECT count() FROM (SELECT number FROM numbers(100000) WHERE number > ?)", 10).Scan(&many)
	report("sql_bound", fmt.Sprint(many), err)
	_, err = db.ExecContext(ctx, "CREATE TABLE go_nope (a Int8) ENGINE = Memory")
	report("readonly", "executed", err)

	lz4 := *opts
	lz4.Compression = &clickhouse.Compression{Method: clickhouse.CompressionLZ4}
	report("lz4", queryCount(ctx, &lz4), nil)
	report("context_cancel", contextCancel(ctx, conn), nil)
}

// queryCount reads 100,000 rows through another connection (compress=1 framing when LZ4).
func queryCount(ctx context.Context, opts *clickhouse.Options) string {
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return "ERROR " + firstLine(err)
	}
	defer conn.Close()
	rows, err := conn.Query(ctx, "SELECT number, toString(number) FROM numbers(100000)")
	if err != nil {
		return "ERROR " + firstLine(err)
	}
	defer rows.Close()
	count, sum := 0, uint64(0)
	for rows.Next() {
		var n uint64
		var s string
		if err := rows.Scan(&n, &s); err != nil {
			return "ERROR " + firstLine(err)
		}
		count, sum = count+1, sum+n
	}
	return fmt.Sprintf("%d %d", count, sum)
}

// contextCancel gives a minute-long query one second, as Grafana does on a dashboard timeout,
// then reports whether the endpoint still runs it.
func contextCancel(ctx context.Context, conn clickhouse.Conn) string {
	marker := fmt.Sprintf("go_cancel_%d", time.Now().UnixNano())
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var n uint64
	err := conn.QueryRow(short, fmt.Sprintf("SELECT count() FROM numbers(%d) WHERE NOT ignore(sleep(0.5)) AND '%s' != ''",
		65409*120, marker)).Scan(&n)
	outcome := "completed"
	if err != nil {
		outcome = "cancelled"
	}
	running := -1
	for i := 0; i < 100 && running != 0; i++ {
		time.Sleep(50 * time.Millisecond)
		var c uint64
		running = -1
		if conn.QueryRow(ctx, "SELECT count() FROM system.processes WHERE query LIKE '%"+marker+
			"%' AND query NOT LIKE '%system.processes%'").Scan(&c) == nil {
			running = int(c)
		}
	}
	return fmt.Sprintf("%s in_processes_after=%d", outcome, running)
}

func sqlRows(ctx context.Context, db *sql.DB) string {
	rows, err := db.QueryContext(ctx, "SELECT number, toString(number), [number, number + 1] FROM numbers(3)")
	if err != nil {
		return "ERROR " + firstLine(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n uint64
		var s string
		var a []uint64
		if err := rows.Scan(&n, &s, &a); err != nil {
			return "ERROR " + firstLine(err)
		}
		out = append(out, fmt.Sprintf("%d:%s:%v", n, s, a))
	}
	if err := rows.Err(); err != nil {
		return "ERROR " + firstLine(err)
	}
	return strings.Join(out, ",")
}

func report(name, value string, err error) {
	if err != nil {
		value = "ERROR " + firstLine(err)
	}
	fmt.Printf("%s\t%s\n", name, value)
}

func firstLine(err error) string {
	return strings.SplitN(err.Error(), "\n", 2)[0]
}
