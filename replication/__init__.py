"""Reference replication suite for Adam vs AMSGrad (Reddi, Kale & Kumar, ICLR 2018),
following the McGill reproducibility study (Bennatan, Collin & Ng Cheng Hin)."""
__version__ = "0.1.0"
