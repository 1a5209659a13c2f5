//! The plan and the report as people read them (`sriovctl provision`).

use super::apply::Report;
use super::plan::Plan;
use std::fmt;

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pfs.is_empty() {
            writeln!(f, "no PF on this node is selected by a policy")?;
        }
        for pf in &self.pfs {
            writeln!(f, "PF {} [{}]", pf.label(), pf.policies.join(", "))?;
            if pf.steps.is_empty() && pf.refused.is_empty() {
                writeln!(f, "  as declared: nothing to do")?;
            }
            for step in &pf.steps {
                writeln!(f, "  {step}")?;
            }
            for refused in &pf.refused {
                writeln!(f, "  REFUSED {refused}")?;
            }
        }
        for name in &self.unmatched_policies {
            writeln!(f, "policy {name:?} selects no PF on this node")?;
        }
        writeln!(
            f,
            "{} step(s) planned, {} refused",
            self.steps(),
            self.refused()
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for pf in &self.pfs {
            let label = match &pf.name {
                Some(name) => format!("{name} ({})", pf.pf),
                None => pf.pf.to_string(),
            };
            writeln!(f, "PF {label}")?;
            for step in &pf.applied {
                writeln!(f, "  applied {step}")?;
            }
            for failed in &pf.failed {
                writeln!(f, "  FAILED  {}: {}", failed.step, failed.message)?;
            }
            for skipped in &pf.skipped {
                writeln!(f, "  skipped {}: {}", skipped.step, skipped.reason)?;
            }
            for refused in &pf.refused {
                writeln!(f, "  REFUSED {refused}")?;
            }
        }
        writeln!(
            f,
            "{} applied, {} failed, {} skipped, {} refused",
            self.applied(),
            self.failed(),
            self.skipped(),
            self.refused()
        )
    }
}
