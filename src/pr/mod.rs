//! SCSI-3 persistent reservations (SPC-4 §5.13): a pure, synchronous core (state, apply,
//! conflict rules, PR IN data, TransportIDs, APTPL store) plus the per-LU fencing gate.
//! Knows nothing of SCSI commands or iSCSI: the SCSI layer maps its commands and sense here.

pub mod apply;
pub mod conflict;
pub mod journal;
pub mod prin;
pub mod record;
pub mod registrants;
pub mod request;
pub mod state;
pub mod store;
pub mod transport_id;
pub mod unit;

pub use apply::{Effects, PrUnitAttention, Transition, DEFAULT_MAX_REGISTRANTS, HARD_MAX_REGISTRANTS};
pub use conflict::{conflicts, spc2_outcome, PrClass, Spc2Outcome};
pub use registrants::Registrants;
pub use request::{PrError, Request};
pub use state::{InitiatorId, ItNexus, PrType, Registrant, RegistrantId, Reservation, State, TargetPort};
pub use store::{FileStore, Store};
pub use unit::{Unit, UnitLock};

#[cfg(test)]
mod apply_tests;
