//! Kernel object types (book ch. 3.5, 4.9). Capabilities arrive with CPU
//! driver II; the numbering is fixed here so every layer agrees on it.

numbered_enum! {
    /// An object type a capability can refer to.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
    pub enum ObjType: u8 {
        Null = 0,
        Ram = 1,
        Frame = 2,
        DevFrame = 3,
        L1CNode = 4,
        L2CNode = 5,
        VNodeL0 = 6,
        VNodeL1 = 7,
        VNodeL2 = 8,
        VNodeL3 = 9,
        Dispatcher = 10,
        EndPointLmp = 11,
        Kernel = 12,
        IrqTable = 13,
        IrqDest = 14,
        KernelControlBlock = 15,
        FrameMapping = 16,
        DevFrameMapping = 17,
        VNodeL0Mapping = 18,
        VNodeL1Mapping = 19,
        VNodeL2Mapping = 20,
        VNodeL3Mapping = 21,
    }
}

impl ObjType {
    /// How many object types there are (numbered densely from 0).
    pub const COUNT: u8 = Self::ALL.len() as u8;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_is_dense_and_round_trips() {
        for raw in 0..ObjType::COUNT {
            assert_eq!(ObjType::from_raw(raw).map(|t| t as u8), Some(raw));
        }
        assert_eq!(ObjType::from_raw(ObjType::COUNT), None);
    }
}
