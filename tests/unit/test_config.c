/* Option parsing: defaults, both flag forms, environment, errors. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "config.h"

static const char *env_vals[8][2];

static const char *fake_env(const char *name)
{
    for (int i = 0; i < 8 && env_vals[i][0]; i++) {
        if (strcmp(env_vals[i][0], name) == 0)
            return env_vals[i][1];
    }
    return NULL;
}

static struct config cfg;
static char err[512];

static enum config_status parse(int argc, char *const argv[])
{
    static char out[8192];
    FILE *f = fmemopen(out, sizeof out, "w");
    enum config_status st = config_parse(&cfg, argc, argv, fake_env, f, err, sizeof err);
    fclose(f);
    return st;
}

static void setup(void)
{
    memset(env_vals, 0, sizeof env_vals);
    err[0] = '\0';
}

TestSuite(config, .init = setup);

Test(config, defaults_match_the_contract)
{
    char *argv[] = {"lkv"};
    cr_assert_eq(parse(1, argv), CONFIG_OK);
    cr_assert_eq(cfg.port, 8080);
    cr_assert_str_eq(cfg.bind, "0.0.0.0");
    cr_assert_str_eq(cfg.data_dir, "./data");
    cr_assert_eq(cfg.max_key_bytes, 1024);
    cr_assert_eq(cfg.max_value_bytes, 10u << 20);
    cr_assert_eq(cfg.max_header_bytes, 8192);
    cr_assert_eq(cfg.idle_timeout_s, 60);
    cr_assert_eq(cfg.request_timeout_s, 10);
    cr_assert_eq(cfg.shutdown_timeout_s, 15);
    cr_assert_str_eq(cfg.log_level, "info");
}

Test(config, both_flag_forms)
{
    char *argv[] = {"lkv", "--port=9001", "--working-dir", "/tmp/x", "--max-value-bytes=1m"};
    cr_assert_eq(parse(5, argv), CONFIG_OK);
    cr_assert_eq(cfg.port, 9001);
    cr_assert_str_eq(cfg.data_dir, "/tmp/x");
    cr_assert_eq(cfg.max_value_bytes, 1u << 20);
}

Test(config, environment_is_read_and_flags_win)
{
    env_vals[0][0] = "ADDR";
    env_vals[0][1] = "node1:7000";
    env_vals[1][0] = "DATA_DIR";
    env_vals[1][1] = "/app/data";
    env_vals[2][0] = "PEERS";
    env_vals[2][1] = "";
    char *argv[] = {"lkv"};
    cr_assert_eq(parse(1, argv), CONFIG_OK);
    cr_assert_eq(cfg.port, 7000);
    cr_assert_str_eq(cfg.data_dir, "/app/data");
    char *argv2[] = {"lkv", "--port", "7100"};
    cr_assert_eq(parse(3, argv2), CONFIG_OK);
    cr_assert_eq(cfg.port, 7100);
}

Test(config, unknown_option_is_named)
{
    char *argv[] = {"lkv", "--frobnicate=1"};
    cr_assert_eq(parse(2, argv), CONFIG_ERROR);
    cr_assert(strstr(err, "--frobnicate") != NULL, "%s", err);
}

Test(config, bad_values_are_named)
{
    char *a1[] = {"lkv", "--port", "0"};
    cr_assert_eq(parse(3, a1), CONFIG_ERROR);
    cr_assert(strstr(err, "--port") != NULL);
    char *a2[] = {"lkv", "--port=70000"};
    cr_assert_eq(parse(2, a2), CONFIG_ERROR);
    char *a3[] = {"lkv", "--max-value-bytes=12q"};
    cr_assert_eq(parse(2, a3), CONFIG_ERROR);
    cr_assert(strstr(err, "--max-value-bytes") != NULL);
    char *a4[] = {"lkv", "--port"};
    cr_assert_eq(parse(2, a4), CONFIG_ERROR);
    char *a5[] = {"lkv", "--log-level=loud"};
    cr_assert_eq(parse(2, a5), CONFIG_ERROR);
    char *a6[] = {"lkv", "8080"};
    cr_assert_eq(parse(2, a6), CONFIG_ERROR);
}

Test(config, bad_addr_environment_is_named)
{
    env_vals[0][0] = "ADDR";
    env_vals[0][1] = "nohostport";
    char *argv[] = {"lkv"};
    cr_assert_eq(parse(1, argv), CONFIG_ERROR);
    cr_assert(strstr(err, "ADDR") != NULL);
}


Test(config, help_and_version_exit_zero)
{
    char *a1[] = {"lkv", "--help"};
    cr_assert_eq(parse(2, a1), CONFIG_EXIT_OK);
    char *a2[] = {"lkv", "--version"};
    cr_assert_eq(parse(2, a2), CONFIG_EXIT_OK);
}

Test(config, addr_defaults_to_loopback_and_the_port)
{
    char *argv[] = {"lkv", "--port", "9005"};
    cr_assert_eq(parse(3, argv), CONFIG_OK);
    cr_assert_str_eq(cfg.addr, "127.0.0.1:9005");
    cr_assert_eq(cfg.npeers, 0);
    cr_assert_eq(cfg.election_timeout_ms, 500);
    cr_assert_eq(cfg.heartbeat_ms, 100);
    cr_assert_str_eq(cfg.read_mode, "index");
    cr_assert_eq(cfg.join, 0);
}

Test(config, addr_sets_the_port_unless_port_is_given)
{
    char *a1[] = {"lkv", "--addr", "node-2:7002"};
    cr_assert_eq(parse(3, a1), CONFIG_OK);
    cr_assert_eq(cfg.port, 7002);
    cr_assert_str_eq(cfg.addr, "node-2:7002");
    char *a2[] = {"lkv", "--addr=node-2:7002", "--port", "8000"};
    cr_assert_eq(parse(4, a2), CONFIG_OK);
    cr_assert_eq(cfg.port, 8000);
    cr_assert_str_eq(cfg.addr, "node-2:7002");
    env_vals[0][0] = "ADDR";
    env_vals[0][1] = "10.1.2.3:8080";
    char *a3[] = {"lkv"};
    cr_assert_eq(parse(1, a3), CONFIG_OK);
    cr_assert_str_eq(cfg.addr, "10.1.2.3:8080");
    cr_assert_eq(cfg.port, 8080);
    char *a4[] = {"lkv", "--port", "9999"};
    cr_assert_eq(parse(3, a4), CONFIG_OK);
    cr_assert_str_eq(cfg.addr, "10.1.2.3:8080");
    cr_assert_eq(cfg.port, 9999);
}

Test(config, peers_are_trimmed_deduplicated_and_exclude_self)
{
    env_vals[0][0] = "ADDR";
    env_vals[0][1] = "n1:8080";
    env_vals[1][0] = "PEERS";
    env_vals[1][1] = " n2:8080, n3:8080,n2:8080,n1:8080 ,";
    char *argv[] = {"lkv"};
    cr_assert_eq(parse(1, argv), CONFIG_OK, "%s", err);
    cr_assert_eq(cfg.npeers, 2);
    cr_assert_str_eq(cfg.peer[0], "n2:8080");
    cr_assert_str_eq(cfg.peer[1], "n3:8080");
    char *ipv6[] = {"lkv", "--peers", "[::1]:9000,[fe80::2]:9001"};
    cr_assert_eq(parse(3, ipv6), CONFIG_OK, "%s", err);
    cr_assert_eq(cfg.npeers, 2);
}

Test(config, bad_cluster_options_name_themselves)
{
    struct {
        const char *arg, *needle;
    } cases[] = {
        {"--peers=n2:8080,nope", "peers"},      {"--peers=n2:0", "peers"},
        {"--peers=a b:80", "peers"},            {"--addr=nohost", "addr"},
        {"--addr=:80", "addr"},                 {"--read-mode=fast", "read-mode"},
        {"--heartbeat-ms=600", "heartbeat-ms"}, {"--election-timeout-ms=5", "election-timeout-ms"},
        {"--join=yes", "join"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *argv[] = {"lkv", (char *)cases[i].arg};
        cr_assert_eq(parse(2, argv), CONFIG_ERROR, "%s was accepted", cases[i].arg);
        cr_assert(strstr(err, cases[i].needle), "%s: '%s'", cases[i].arg, err);
        cr_assert_null(strchr(err, '\n'));
    }
}

Test(config, join_from_flag_or_environment)
{
    char *a1[] = {"lkv", "--join"};
    cr_assert_eq(parse(2, a1), CONFIG_OK);
    cr_assert_eq(cfg.join, 1);
    env_vals[0][0] = "JOIN";
    env_vals[0][1] = "1";
    env_vals[1][0] = "CLUSTER_SECRET";
    env_vals[1][1] = "s3cret";
    char *a2[] = {"lkv"};
    cr_assert_eq(parse(1, a2), CONFIG_OK);
    cr_assert_eq(cfg.join, 1);
    cr_assert_str_eq(cfg.cluster_secret, "s3cret");
    env_vals[0][1] = "0";
    cr_assert_eq(parse(1, a2), CONFIG_OK);
    cr_assert_eq(cfg.join, 0);
}
