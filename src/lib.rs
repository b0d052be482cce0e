pub mod iscsi;
