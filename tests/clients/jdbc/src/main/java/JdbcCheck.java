import java.sql.Array;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicReference;

/**
 * The ClickHouse JDBC driver with its default settings, as DBeaver and Metabase use it.
 *
 * Usage: JdbcCheck URL USER PASSWORD TABLE. Prints one "check<TAB>result" line per check; the
 * Python test (tests/tweetflow/test_analyst_clients.py) asserts on them. A failing check prints
 * "ERROR <code> <message>" as its result instead of stopping the others.
 */
public final class JdbcCheck {
    private JdbcCheck() {
    }

    private interface Check {
        String run(Connection conn) throws Exception;
    }

    public static void main(String[] args) throws Exception {
        String url = args[0];
        Properties props = new Properties();
        props.setProperty("user", args[1]);
        props.setProperty("password", args[2]);
        String table = args[3];
        try (Connection conn = DriverManager.getConnection(url, props)) {
            report("product", conn, c -> c.getMetaData().getDatabaseProductName());
            report("tables", conn, c -> tables(c.getMetaData(), table));
            report("columns", conn, c -> columns(c.getMetaData(), table));
            report("prepared", conn, c -> prepared(c, table));
            report("datetime64", conn, c -> scalar(c,
                    "SELECT toDateTime64('2024-01-02 03:04:05.678', 3, 'UTC') AS ts", 1, true));
            report("arrays", conn, JdbcCheck::arrays);
            report("max_rows", conn, c -> maxRows(c, table));
            report("readonly", conn, c -> update(c, "CREATE TABLE jdbc_nope (a Int8) ENGINE = Memory"));
            report("cancel", conn, JdbcCheck::cancel);
            report("after_cancel", conn, c -> scalar(c, "SELECT 'still usable'", 1, false));
        }
    }

    private static void report(String name, Connection conn, Check check) {
        String result;
        try {
            result = check.run(conn);
        } catch (SQLException e) {
            result = "ERROR " + e.getErrorCode() + " " + firstLine(e.getMessage());
        } catch (Exception e) {
            result = "ERROR " + e.getClass().getSimpleName() + " " + firstLine(e.getMessage());
        }
        System.out.println(name + "\t" + result);
        System.out.flush();
    }

    private static String firstLine(String message) {
        return message == null ? "" : message.split("\n", 2)[0];
    }

    private static String tables(DatabaseMetaData meta, String table) throws SQLException {
        return pairs(meta.getTables(null, null, table, null), "TABLE_NAME", "TABLE_TYPE");
    }

    private static String columns(DatabaseMetaData meta, String table) throws SQLException {
        return pairs(meta.getColumns(null, null, table, null), "COLUMN_NAME", "TYPE_NAME");
    }

    /** "a:b,..." of two columns of every row; closes the result set. */
    private static String pairs(ResultSet rs, String first, String second) throws SQLException {
        List<String> found = new ArrayList<>();
        try (rs) {
            while (rs.next()) {
                found.add(rs.getString(first) + ":" + rs.getString(second));
            }
        }
        return String.join(",", found);
    }

    private static String prepared(Connection conn, String table) throws SQLException {
        String sql = "SELECT id, s FROM " + table + " WHERE id >= ? AND s != ? ORDER BY id LIMIT 2";
        try (PreparedStatement ps = conn.prepareStatement(sql)) {
            ps.setLong(1, 2);
            ps.setString(2, "it's \"quoted\"");
            List<String> rows = new ArrayList<>();
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    rows.add(rs.getLong(1) + "=" + rs.getString(2));
                }
            }
            return String.join(",", rows);
        }
    }

    private static String scalar(Connection conn, String sql, int column, boolean asInstant)
            throws SQLException {
        try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery(sql)) {
            rs.next();
            return asInstant ? rs.getTimestamp(column).toInstant().toString() : rs.getString(column);
        }
    }

    private static String arrays(Connection conn) throws SQLException {
        try (Statement st = conn.createStatement();
             ResultSet rs = st.executeQuery("SELECT [1, 2, 3] AS ints, ['a', 'b'] AS strs")) {
            rs.next();
            Array ints = rs.getArray(1);
            Array strs = rs.getArray(2);
            return Arrays.deepToString(new Object[] {ints.getArray(), strs.getArray()});
        }
    }

    private static String maxRows(Connection conn, String table) throws SQLException {
        try (Statement st = conn.createStatement()) {
            st.setMaxRows(2);
            int rows = 0;
            try (ResultSet rs = st.executeQuery("SELECT number FROM numbers(100000)")) {
                while (rs.next()) {
                    rows++;
                }
            }
            return Integer.toString(rows);
        }
    }

    private static String update(Connection conn, String sql) throws SQLException {
        try (Statement st = conn.createStatement()) {
            st.execute(sql);
            return "executed";
        }
    }

    /** 120 blocks of 65,409 rows, each sleeping 0.5 s: a minute, unless stopped. */
    static final long SLOW_ROWS = 65_409L * 120;

    /** A slow query cancelled once it runs: the driver sends KILL QUERY WHERE query_id = '...'. */
    private static String cancel(Connection conn) throws Exception {
        String marker = "jdbc_cancel_" + System.nanoTime();
        AtomicReference<String> outcome = new AtomicReference<>("not finished");
        try (Statement st = conn.createStatement()) {
            Thread runner = new Thread(() -> {
                try (ResultSet rs = st.executeQuery("SELECT '" + marker + "', count() "
                        + "FROM numbers(" + SLOW_ROWS + ") WHERE NOT ignore(sleep(0.5))")) {
                    rs.next();
                    outcome.set("completed");
                } catch (SQLException e) {
                    outcome.set("cancelled");
                }
            });
            runner.start();
            waitUntilRunning(conn, marker);
            long start = System.nanoTime();
            st.cancel();
            runner.join(20_000);
            long millis = (System.nanoTime() - start) / 1_000_000;
            return outcome.get() + " in_processes_after=" + running(conn, marker) + " ms=" + millis;
        }
    }

    private static void waitUntilRunning(Connection conn, String marker) throws Exception {
        for (int i = 0; i < 200 && running(conn, marker) == 0; i++) {
            Thread.sleep(50);
        }
    }

    private static int running(Connection conn, String marker) throws SQLException {
        String sql = "SELECT count() FROM system.processes WHERE query LIKE '%" + marker
                + "%' AND query NOT LIKE '%system.processes%'";
        try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery(sql)) {
            rs.next();
            return rs.getInt(1);
        }
    }
}
