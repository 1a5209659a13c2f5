//! One uevent as plain data: the kernel's wire format, parsed and encoded,
//! and what a PCI function's add/remove/bind/unbind carries (pure).

use super::UeventError;
use crate::pci::PciAddress;
use std::fmt;

/// What happened to the device: the kernel's `kobject_actions` words.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    Add,
    Remove,
    Change,
    Move,
    Online,
    Offline,
    Bind,
    Unbind,
    /// A word this code does not know yet (a newer kernel), kept verbatim so
    /// a listener can log it instead of failing on it.
    Other(String),
}

impl Action {
    /// The lower-case word the kernel prints before the `@`.
    pub fn as_str(&self) -> &str {
        match self {
            Action::Add => "add",
            Action::Remove => "remove",
            Action::Change => "change",
            Action::Move => "move",
            Action::Online => "online",
            Action::Offline => "offline",
            Action::Bind => "bind",
            Action::Unbind => "unbind",
            Action::Other(word) => word,
        }
    }

    /// The action for a word; unknown words become [`Action::Other`].
    pub fn from_word(word: &str) -> Action {
        match word {
            "add" => Action::Add,
            "remove" => Action::Remove,
            "change" => Action::Change,
            "move" => Action::Move,
            "online" => Action::Online,
            "offline" => Action::Offline,
            "bind" => Action::Bind,
            "unbind" => Action::Unbind,
            other => Action::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kernel's words are lower-case letters; anything else in front of the
/// `@` is not a uevent (and an `@` or `=` in it would make the header
/// ambiguous).
pub(super) fn is_action_word(word: &str) -> bool {
    !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// One kernel uevent: `ACTION@DEVPATH` and its `KEY=VALUE` variables in
/// message order. The kernel repeats ACTION and DEVPATH as the first two
/// variables, and [`Uevent::parse`] checks they agree with the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uevent {
    pub action: Action,
    /// The device's path below the sysfs root, e.g.
    /// `/devices/pci0000:3a/0000:3a:00.0/0000:3b:01.0`.
    pub devpath: String,
    /// Every variable in message order, ACTION and DEVPATH included.
    pub vars: Vec<(String, String)>,
}

/// A PCI function as its uevents describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciFunction {
    /// Path below the sysfs root: `/devices/pci0000:3a/0000:3a:00.0/0000:3b:01.0`.
    pub devpath: String,
    pub slot: PciAddress,
    pub vendor: u16,
    pub device: u16,
    pub subsystem_vendor: u16,
    pub subsystem_device: u16,
    /// The 24-bit class code as sysfs `class` shows it, e.g. `0x020000`.
    pub class: u32,
}

impl Uevent {
    /// An event with the three variables the kernel puts first in every
    /// message: ACTION, DEVPATH and SUBSYSTEM.
    pub fn new(action: Action, devpath: impl Into<String>, subsystem: &str) -> Uevent {
        let devpath = devpath.into();
        Uevent {
            vars: vec![
                ("ACTION".to_owned(), action.as_str().to_owned()),
                ("DEVPATH".to_owned(), devpath.clone()),
                ("SUBSYSTEM".to_owned(), subsystem.to_owned()),
            ],
            action,
            devpath,
        }
    }

    /// Appends a variable (the kernel's `add_uevent_var`).
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.vars.push((key.into(), value.into()));
    }

    /// The first value of `key`.
    pub fn var(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn subsystem(&self) -> Option<&str> {
        self.var("SUBSYSTEM")
    }

    /// The bound driver's name; the kernel sends it on `bind` and on events
    /// of a device that has a driver, never on `unbind` or `remove`.
    pub fn driver(&self) -> Option<&str> {
        self.var("DRIVER")
    }

    /// The PCI function's address from `PCI_SLOT_NAME`, when it is there and
    /// well formed.
    pub fn pci_slot(&self) -> Option<PciAddress> {
        self.var("PCI_SLOT_NAME")?.parse().ok()
    }

    /// The sender's sequence number (the kernel's is global and increasing).
    pub fn seqnum(&self) -> Option<u64> {
        self.var("SEQNUM")?.parse().ok()
    }

    /// Parses one datagram: `ACTION@DEVPATH\0KEY=VALUE\0...`.
    pub fn parse(bytes: &[u8]) -> Result<Uevent, UeventError> {
        let malformed = |detail: String| UeventError::Malformed(detail);
        if bytes.is_empty() {
            return Err(malformed("empty message".into()));
        }
        // Every field, the last included, ends with a NUL; tolerate a missing
        // final one rather than lose the event.
        let body = bytes.strip_suffix(b"\0").unwrap_or(bytes);
        let mut fields = body.split(|&b| b == 0);
        let header = fields.next().unwrap_or_default();
        let header = std::str::from_utf8(header)
            .map_err(|_| malformed("the ACTION@DEVPATH header is not UTF-8".into()))?;
        let Some((word, devpath)) = header.split_once('@') else {
            if header.starts_with("libudev") {
                return Err(malformed(
                    "a udev (group 2) message, not a kernel uevent".into(),
                ));
            }
            return Err(malformed(format!(
                "header {:?} has no '@' between action and devpath",
                shorten(header)
            )));
        };
        if !is_action_word(word) {
            return Err(malformed(format!(
                "{:?} is not an action word",
                shorten(word)
            )));
        }
        if !devpath.starts_with('/') {
            return Err(malformed(format!(
                "devpath {:?} does not start with '/'",
                shorten(devpath)
            )));
        }

        let mut vars = Vec::new();
        for (index, field) in fields.enumerate() {
            let field = std::str::from_utf8(field).map_err(|_| {
                malformed(format!("variable {} of {header} is not UTF-8", index + 1))
            })?;
            let Some((key, value)) = field.split_once('=') else {
                return Err(malformed(format!(
                    "variable {} of {header} ({:?}) has no '='",
                    index + 1,
                    shorten(field)
                )));
            };
            if key.is_empty() {
                return Err(malformed(format!(
                    "variable {} of {header} has an empty key",
                    index + 1
                )));
            }
            vars.push((key.to_owned(), value.to_owned()));
        }

        let event = Uevent {
            action: Action::from_word(word),
            devpath: devpath.to_owned(),
            vars,
        };
        // The kernel always repeats the header as ACTION and DEVPATH; a
        // message that does not is not one of its uevents.
        for (key, expected) in [("ACTION", word), ("DEVPATH", devpath)] {
            match event.var(key) {
                Some(value) if value == expected => {}
                Some(value) => {
                    return Err(malformed(format!(
                        "{header}: {key}={value} disagrees with the header"
                    )))
                }
                None => return Err(malformed(format!("{header}: no {key} variable"))),
            }
        }
        Ok(event)
    }

    /// The datagram the kernel would send for this event.
    pub fn encode(&self) -> Vec<u8> {
        let capacity = self.action.as_str().len()
            + self.devpath.len()
            + 2
            + self
                .vars
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>();
        let mut bytes = Vec::with_capacity(capacity);
        bytes.extend_from_slice(self.action.as_str().as_bytes());
        bytes.push(b'@');
        bytes.extend_from_slice(self.devpath.as_bytes());
        bytes.push(0);
        for (key, value) in &self.vars {
            bytes.extend_from_slice(key.as_bytes());
            bytes.push(b'=');
            bytes.extend_from_slice(value.as_bytes());
            bytes.push(0);
        }
        bytes
    }

    // The order a real kernel announces SR-IOV changes in, for a simulator
    // to follow: writing N to a PF's sriov_numvfs sends, VF by VF, `add`
    // then `bind` (when a VF driver probes it), and finally one `change` of
    // the PF; writing 0 sends, VF by VF, `unbind` then `remove`, and no
    // `change`.

    /// A PCI function appeared (`device_add`). No DRIVER: the kernel sends
    /// `add` before any driver probes the device; a `bind` follows.
    pub fn pci_add(function: &PciFunction) -> Uevent {
        let mut event = Uevent::new(Action::Add, function.devpath.as_str(), "pci");
        push_pci_vars(&mut event, function, true);
        event
    }

    /// A driver bound to the function: DRIVER comes before the bus's
    /// variables, as `dev_uevent` adds it before calling `pci_uevent`.
    pub fn pci_bind(function: &PciFunction, driver: &str) -> Uevent {
        let mut event = Uevent::new(Action::Bind, function.devpath.as_str(), "pci");
        event.push("DRIVER", driver);
        push_pci_vars(&mut event, function, true);
        event
    }

    /// The driver let go of the function. The kernel sends this after
    /// clearing the device's driver, so there is no DRIVER, and it strips
    /// MODALIAS from unbind events (`zap_modalias_env`).
    pub fn pci_unbind(function: &PciFunction) -> Uevent {
        let mut event = Uevent::new(Action::Unbind, function.devpath.as_str(), "pci");
        push_pci_vars(&mut event, function, false);
        event
    }

    /// The function went away (`device_del`, after any `unbind`): the PCI
    /// variables and MODALIAS, no DRIVER.
    pub fn pci_remove(function: &PciFunction) -> Uevent {
        let mut event = Uevent::new(Action::Remove, function.devpath.as_str(), "pci");
        push_pci_vars(&mut event, function, true);
        event
    }

    /// Something about the function changed; the kernel sends this for a PF
    /// once its VFs are enabled. A bound function carries its DRIVER, like
    /// every event of a device with a driver.
    pub fn pci_change(function: &PciFunction, driver: Option<&str>) -> Uevent {
        let mut event = Uevent::new(Action::Change, function.devpath.as_str(), "pci");
        if let Some(driver) = driver {
            event.push("DRIVER", driver);
        }
        push_pci_vars(&mut event, function, true);
        event
    }
}

/// What `pci_uevent` (drivers/pci/hotplug.c) adds, with its formats: upper
/// case hex, the class without leading zeros beyond four digits, and a
/// lower-case programming interface at the end of MODALIAS.
fn push_pci_vars(event: &mut Uevent, f: &PciFunction, modalias: bool) {
    event.push("PCI_CLASS", format!("{:04X}", f.class));
    event.push("PCI_ID", format!("{:04X}:{:04X}", f.vendor, f.device));
    event.push(
        "PCI_SUBSYS_ID",
        format!("{:04X}:{:04X}", f.subsystem_vendor, f.subsystem_device),
    );
    event.push("PCI_SLOT_NAME", f.slot.to_string());
    if modalias {
        let [_, base, sub, interface] = f.class.to_be_bytes();
        event.push(
            "MODALIAS",
            format!(
                "pci:v{:08X}d{:08X}sv{:08X}sd{:08X}bc{base:02X}sc{sub:02X}i{interface:02x}",
                f.vendor, f.device, f.subsystem_vendor, f.subsystem_device
            ),
        );
    }
}

/// Keeps error messages readable when the input is long or binary garbage.
fn shorten(text: &str) -> String {
    const LIMIT: usize = 80;
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vf() -> PciFunction {
        PciFunction {
            devpath: "/devices/pci0000:3a/0000:3a:00.0/0000:3b:01.0".into(),
            slot: "0000:3b:01.0".parse().unwrap(),
            vendor: 0x8086,
            device: 0x1889,
            subsystem_vendor: 0x8086,
            subsystem_device: 0x0000,
            class: 0x020000,
        }
    }

    // What an E810 VF's add and bind look like on the wire, written out from
    // the kernel's format (kobject_uevent_env + dev_uevent + pci_uevent).
    const KERNEL_VF_ADD: &[u8] = b"add@/devices/pci0000:3a/0000:3a:00.0/0000:3b:01.0\0\
ACTION=add\0\
DEVPATH=/devices/pci0000:3a/0000:3a:00.0/0000:3b:01.0\0\
SUBSYSTEM=pci\0\
PCI_CLASS=20000\0\
PCI_ID=8086:1889\0\
PCI_SUBSYS_ID=8086:0000\0\
PCI_SLOT_NAME=0000:3b:01.0\0\
MODALIAS=pci:v00008086d00001889sv00008086sd00000000bc02sc00i00\0\
SEQNUM=4711\0";

    const KERNEL_VF_BIND: &[u8] = b"bind@/devices/pci0000:3a/0000:3a:00.0/0000:3b:01.0\0\
ACTION=bind\0\
DEVPATH=/devices/pci0000:3a/0000:3a:00.0/0000:3b:01.0\0\
SUBSYSTEM=pci\0\
DRIVER=iavf\0\
PCI_CLASS=20000\0\
PCI_ID=8086:1889\0\
PCI_SUBSYS_ID=8086:0000\0\
PCI_SLOT_NAME=0000:3b:01.0\0\
MODALIAS=pci:v00008086d00001889sv00008086sd00000000bc02sc00i00\0\
SEQNUM=4712\0";

    fn parse(bytes: &[u8]) -> Uevent {
        Uevent::parse(bytes).unwrap()
    }

    #[test]
    fn parses_a_kernel_vf_add() {
        let event = parse(KERNEL_VF_ADD);
        assert_eq!(event.action, Action::Add);
        assert_eq!(
            event.devpath,
            "/devices/pci0000:3a/0000:3a:00.0/0000:3b:01.0"
        );
        assert_eq!(event.subsystem(), Some("pci"));
        assert_eq!(event.driver(), None);
        assert_eq!(event.pci_slot(), Some(vf().slot));
        assert_eq!(event.seqnum(), Some(4711));
        assert_eq!(event.var("PCI_ID"), Some("8086:1889"));
        let keys: Vec<&str> = event.vars.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "ACTION",
                "DEVPATH",
                "SUBSYSTEM",
                "PCI_CLASS",
                "PCI_ID",
                "PCI_SUBSYS_ID",
                "PCI_SLOT_NAME",
                "MODALIAS",
                "SEQNUM"
            ]
        );
    }

    #[test]
    fn parses_a_kernel_vf_bind_with_its_driver() {
        let event = parse(KERNEL_VF_BIND);
        assert_eq!(event.action, Action::Bind);
        assert_eq!(event.driver(), Some("iavf"));
        assert_eq!(event.seqnum(), Some(4712));
    }

    #[test]
    fn encode_reproduces_the_kernel_bytes() {
        assert_eq!(parse(KERNEL_VF_ADD).encode(), KERNEL_VF_ADD);
        assert_eq!(parse(KERNEL_VF_BIND).encode(), KERNEL_VF_BIND);
    }

    #[test]
    fn builders_match_what_the_kernel_sends() {
        let mut add = Uevent::pci_add(&vf());
        add.push("SEQNUM", "4711");
        assert_eq!(add.encode(), KERNEL_VF_ADD);

        let mut bind = Uevent::pci_bind(&vf(), "iavf");
        bind.push("SEQNUM", "4712");
        assert_eq!(bind.encode(), KERNEL_VF_BIND);
    }

    #[test]
    fn unbind_has_no_driver_and_no_modalias_remove_keeps_modalias() {
        let unbind = Uevent::pci_unbind(&vf());
        assert_eq!(unbind.action, Action::Unbind);
        assert_eq!(unbind.driver(), None);
        assert_eq!(unbind.var("MODALIAS"), None);
        assert_eq!(unbind.var("PCI_SLOT_NAME"), Some("0000:3b:01.0"));

        let remove = Uevent::pci_remove(&vf());
        assert_eq!(remove.action, Action::Remove);
        assert_eq!(remove.driver(), None);
        assert!(remove.var("MODALIAS").is_some());
    }

    #[test]
    fn a_pf_change_carries_its_driver_when_bound() {
        let mut pf = vf();
        pf.devpath = "/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0".into();
        pf.slot = "0000:3b:00.0".parse().unwrap();
        pf.device = 0x1592;
        let change = Uevent::pci_change(&pf, Some("ice"));
        let keys: Vec<&str> = change.vars.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "ACTION",
                "DEVPATH",
                "SUBSYSTEM",
                "DRIVER",
                "PCI_CLASS",
                "PCI_ID",
                "PCI_SUBSYS_ID",
                "PCI_SLOT_NAME",
                "MODALIAS"
            ]
        );
        assert_eq!(change.action, Action::Change);
        assert_eq!(change.driver(), Some("ice"));
        assert_eq!(Uevent::pci_change(&pf, None).driver(), None);
    }

    #[test]
    fn pci_formats_follow_pci_uevent() {
        let mut function = vf();
        function.vendor = 0x15b3;
        function.device = 0x101e;
        function.subsystem_vendor = 0x15b3;
        function.subsystem_device = 0x0047;
        // A class with a non-zero programming interface shows the lower-case
        // `i` field; a class with a high byte of zero keeps four digits.
        function.class = 0x0c033a;
        let event = Uevent::pci_add(&function);
        assert_eq!(event.var("PCI_CLASS"), Some("C033A"));
        assert_eq!(event.var("PCI_ID"), Some("15B3:101E"));
        assert_eq!(event.var("PCI_SUBSYS_ID"), Some("15B3:0047"));
        assert_eq!(
            event.var("MODALIAS"),
            Some("pci:v000015B3d0000101Esv000015B3sd00000047bc0Csc03i3a")
        );
        function.class = 0x000100;
        assert_eq!(Uevent::pci_add(&function).var("PCI_CLASS"), Some("0100"));
    }

    #[test]
    fn round_trips_every_action_and_unknown_words() {
        for word in [
            "add", "remove", "change", "move", "online", "offline", "bind", "unbind", "future",
        ] {
            let action = Action::from_word(word);
            assert_eq!(action.as_str(), word);
            let mut event = Uevent::new(action.clone(), "/devices/virtual/x", "pci");
            event.push("SEQNUM", "1");
            let back = parse(&event.encode());
            assert_eq!(back, event);
        }
        assert_eq!(Action::from_word("future"), Action::Other("future".into()));
    }

    #[test]
    fn values_may_contain_equals_signs_and_be_empty() {
        let mut event = Uevent::new(Action::Change, "/devices/x", "pci");
        event.push("EXPR", "a=b=c");
        event.push("EMPTY", "");
        let back = parse(&event.encode());
        assert_eq!(back.var("EXPR"), Some("a=b=c"));
        assert_eq!(back.var("EMPTY"), Some(""));
    }

    #[test]
    fn a_missing_final_nul_is_tolerated() {
        let trimmed = &KERNEL_VF_ADD[..KERNEL_VF_ADD.len() - 1];
        assert_eq!(parse(trimmed), parse(KERNEL_VF_ADD));
    }

    fn malformed(bytes: &[u8]) -> String {
        match Uevent::parse(bytes) {
            Err(UeventError::Malformed(detail)) => detail,
            other => panic!("{bytes:?}: expected a malformed-uevent error, got {other:?}"),
        }
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        assert!(malformed(b"").contains("empty"));
        assert!(malformed(b"\0").contains("no '@'"));
        assert!(malformed(b"add/devices/x\0ACTION=add\0").contains("no '@'"));
        assert!(malformed(b"@/devices/x\0").contains("not an action word"));
        assert!(malformed(b"ADD@/devices/x\0").contains("not an action word"));
        assert!(malformed(b"add@devices/x\0ACTION=add\0").contains("start with '/'"));
        assert!(malformed(b"add@/x\0ACTION=add\0DEVPATH=/x\0NOEQUALS\0").contains("no '='"));
        assert!(malformed(b"add@/x\0ACTION=add\0DEVPATH=/x\0=v\0").contains("empty key"));
        assert!(malformed(b"add@/x\0ACTION=add\0DEVPATH=/x\0\0A=b\0").contains("no '='"));
        assert!(malformed(b"add@/x\0ACTION=add\0DEVPATH=/x\0K=\xff\xfe\0").contains("UTF-8"));
        assert!(malformed(b"add@/\xff\0").contains("UTF-8"));
        assert!(malformed(b"add@/x\0DEVPATH=/x\0").contains("no ACTION"));
        assert!(malformed(b"add@/x\0ACTION=add\0").contains("no DEVPATH"));
        assert!(malformed(b"add@/x\0ACTION=remove\0DEVPATH=/x\0").contains("disagrees"));
        assert!(malformed(b"add@/x\0ACTION=add\0DEVPATH=/y\0").contains("disagrees"));
    }

    #[test]
    fn a_udev_group_2_message_is_named_as_such() {
        // udevd's re-broadcast starts with "libudev\0" and a binary header.
        let mut message = b"libudev\0".to_vec();
        message.extend_from_slice(&[0xfe, 0xed, 0xca, 0xfe, 0x28, 0, 0, 0]);
        assert!(malformed(&message).contains("udev"));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: every prefix and many byte flips of a
        // real message either parse or give an error.
        for end in 0..=KERNEL_VF_BIND.len() {
            let _ = Uevent::parse(&KERNEL_VF_BIND[..end]);
        }
        let mut state: u32 = 0x2545_f491;
        for _ in 0..2000 {
            let mut bytes = KERNEL_VF_BIND.to_vec();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let at = state as usize % bytes.len();
                bytes[at] = (state >> 8) as u8;
            }
            let _ = Uevent::parse(&bytes);
        }
    }

    #[test]
    fn long_garbage_is_shortened_in_errors() {
        let mut message = vec![b'x'; 5000];
        message.push(0);
        let detail = malformed(&message);
        assert!(detail.len() < 200, "{detail}");
    }
}
