//! The firewalls a router has beside multiwan, run for real in the lab's router: Debian's
//! nftables service (its default /etc/nftables.conf starts with `flush ruleset`) and ufw
//! (with its configuration in a private copy: the host's /etc/ufw is never touched).

use super::Lab;

/// Debian's default /etc/nftables.conf, as the nftables package ships it.
pub const DEBIAN_NFTABLES_CONF: &str = "#!/usr/sbin/nft -f

flush ruleset

table inet filter {
\tchain input {
\t\ttype filter hook input priority filter;
\t}
\tchain forward {
\t\ttype filter hook forward priority filter;
\t}
\tchain output {
\t\ttype filter hook output priority filter;
\t}
}
";

impl Lab {
    /// What `systemctl start|reload nftables` does on Debian: `nft -f /etc/nftables.conf`.
    pub fn nftables_service_reload(&self) {
        let conf = self.file("nftables.conf", DEBIAN_NFTABLES_CONF);
        self.exec_ok("rt", &["nft", "-f", &conf.to_string_lossy()]);
    }

    /// Runs `ufw ARGS` in the router. ufw reads and writes /etc/ufw and /etc/default/ufw:
    /// both are bind-mounted from copies in the lab's folder, in the mount namespace `ip
    /// netns exec` makes for the command (so the host never sees them); the copy applies
    /// no sysctls.
    pub fn ufw(&self, args: &[&str]) -> String {
        let etc = self.dir.join("etc-ufw");
        let default = self.dir.join("default-ufw");
        if !etc.exists() {
            let ok = std::process::Command::new("cp")
                .args(["-a", "/etc/ufw"])
                .arg(&etc)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "copy /etc/ufw (apt-get install ufw)");
            std::fs::write(etc.join("sysctl.conf"), "").unwrap();
            std::fs::copy("/etc/default/ufw", &default).unwrap();
        }
        // On legacy, ufw's plain `iptables` must be legacy too: the binary behind it is
        // swapped in this mount namespace only.
        let swap = if super::legacy() {
            "mount --bind /usr/sbin/xtables-legacy-multi /usr/sbin/xtables-nft-multi && "
        } else {
            ""
        };
        let script = format!(
            "{swap}mount --bind \"$1\" /etc/ufw && mount --bind \"$2\" /etc/default/ufw && shift 2 && exec ufw \"$@\""
        );
        let (etc, default) = (etc.to_string_lossy(), default.to_string_lossy());
        let mut argv = vec!["sh", "-c", &script, "sh", &etc, &default];
        argv.extend_from_slice(args);
        self.exec_ok("rt", &argv)
    }
}
