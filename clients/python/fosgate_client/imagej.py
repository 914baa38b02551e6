"""ImageJ bridge: fosgate results in ImageJ's ROI Manager and overlays, from Python.

Two ways to reach ImageJ:
- with a local Fiji (``FIJI_HOME`` or ``fiji_home=``): pyimagej, ``imagej.init(FIJI_HOME)``;
- otherwise plain ImageJ 1.x through scyjava + ``ij.jar`` (``IJ_JAR`` or Debian's
  ``/usr/share/java/ij.jar``), with nothing fetched from the network.

Then, with a :class:`~fosgate_client.client.FosgateClient`::

    bridge = ImageJBridge.start()
    imp = bridge.to_imageplus(array, "slice 12")       # numpy <-> ImagePlus
    n = bridge.segment(fg, model_id, imp)               # cells -> ROI Manager + overlay, returns the count
    label = bridge.send_roi_manager(fg, imp, reviewer="ana")   # reviewed ROIs -> a fosgate label

Only the protocol is spoken (through the client); ROIs travel as ImageJ ROI sets (.zip bytes),
decoded and encoded by ImageJ itself (``ij.io.RoiDecoder`` / ``RoiEncoder``).
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

DEBIAN_IJ_JAR = "/usr/share/java/ij.jar"


class ImageJBridge:
    """A running JVM with ImageJ classes; create with :meth:`start`."""

    def __init__(self, ij: Any = None):
        import scyjava

        self.ij = ij  # the pyimagej gateway when started with Fiji, else None
        self._rm = None
        self._j = scyjava.jimport
        self.IJ = self._j("ij.IJ")
        self.ImagePlus = self._j("ij.ImagePlus")

    # ------------------------------------------------------------------ start-up
    @classmethod
    def start(cls, fiji_home: str | os.PathLike | None = None, ij_jar: str | os.PathLike | None = None,
              mode: str = "interactive") -> ImageJBridge:
        import scyjava

        fiji_home = fiji_home or os.environ.get("FIJI_HOME")
        if fiji_home:
            import imagej

            return cls(imagej.init(str(fiji_home), mode=mode))
        jar = Path(ij_jar or os.environ.get("IJ_JAR") or DEBIAN_IJ_JAR)
        if not jar.is_file():
            raise FileNotFoundError(f"ImageJ's ij.jar was not found at {jar}; set FIJI_HOME to a Fiji.app folder "
                                    "or IJ_JAR to an ij.jar.")
        if not scyjava.jvm_started():
            scyjava.config.set_java_constraints(fetch="never")  # never download a JDK
            scyjava.config.endpoints.clear()  # never resolve Maven artifacts
            scyjava.config.add_classpath(str(jar))
            scyjava.start_jvm()
        return cls(None)

    # ------------------------------------------------------------------ images
    def to_imageplus(self, array: np.ndarray, title: str = "image"):
        """uint8 / uint16 / float32 grey (h, w) or uint8 RGB (h, w, 3) -> ImagePlus (data copied)."""
        import jpype

        a = np.ascontiguousarray(array)
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[..., 0]
        if a.ndim == 3 and a.shape[2] == 3 and a.dtype == np.uint8:
            packed = (a[..., 0].astype(np.int32) << 16) | (a[..., 1].astype(np.int32) << 8) | a[..., 2]
            ip = self._j("ij.process.ColorProcessor")(a.shape[1], a.shape[0],
                                                      jpype.JArray(jpype.JInt)(packed.ravel()))
        elif a.ndim != 2:
            raise ValueError(f"expected a (h, w) grey or (h, w, 3) uint8 RGB image, got {a.shape} {a.dtype}")
        elif a.dtype == np.uint8:
            ip = self._j("ij.process.ByteProcessor")(a.shape[1], a.shape[0],
                                                     jpype.JArray(jpype.JByte)(a.ravel().view(np.int8)), None)
        elif a.dtype == np.uint16:
            ip = self._j("ij.process.ShortProcessor")(a.shape[1], a.shape[0],
                                                      jpype.JArray(jpype.JShort)(a.ravel().view(np.int16)), None)
        else:
            ip = self._j("ij.process.FloatProcessor")(a.shape[1], a.shape[0],
                                                      jpype.JArray(jpype.JFloat)(a.astype(np.float32).ravel()))
        return self.ImagePlus(title, ip)

    def from_imageplus(self, imp) -> np.ndarray:
        """ImagePlus (current slice) -> numpy: uint8, uint16, float32 or (h, w, 3) uint8 for RGB."""
        ip = imp.getProcessor()
        w, h = int(ip.getWidth()), int(ip.getHeight())
        bits = int(imp.getBitDepth())
        pixels = np.array(ip.getPixels())
        if bits == 8:
            return pixels.astype(np.int8, copy=False).view(np.uint8).reshape(h, w)
        if bits == 16:
            return pixels.astype(np.int16, copy=False).view(np.uint16).reshape(h, w)
        if bits == 24:
            p = pixels.astype(np.int32).reshape(h, w)
            return np.stack([(p >> 16) & 255, (p >> 8) & 255, p & 255], axis=-1).astype(np.uint8)
        return pixels.astype(np.float32).reshape(h, w)

    # ------------------------------------------------------------------ ROIs
    def roi_manager(self):
        """The visible ROI Manager if there is one, else a hidden one kept by this bridge."""
        RoiManager = self._j("ij.plugin.frame.RoiManager")
        rm = RoiManager.getInstance()
        if rm is not None:
            return rm
        if self._rm is None:
            self._rm = RoiManager(True)  # hidden managers are not registered: keep ours
        return self._rm

    def rois_from_zip(self, data: bytes) -> list:
        """Decode an ImageJ ROI set with ImageJ's own decoder."""
        import jpype

        RoiDecoder = self._j("ij.io.RoiDecoder")
        rois = []
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for name in zf.namelist():
                if name.lower().endswith(".roi"):
                    blob = zf.read(name)
                    roi = RoiDecoder(jpype.JArray(jpype.JByte)(np.frombuffer(blob, np.int8)), name).getRoi()
                    roi.setName(name[:-4])
                    rois.append(roi)
        return rois

    def rois_to_zip(self, rois) -> bytes:
        RoiEncoder = self._j("ij.io.RoiEncoder")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for i, roi in enumerate(rois):
                name = str(roi.getName() or f"roi-{i + 1:05d}")
                zf.writestr(f"{name}.roi", np.array(RoiEncoder.saveAsByteArray(roi), dtype=np.int8).tobytes())
        return buf.getvalue()

    def show_rois(self, imp, rois, reset: bool = True) -> int:
        """Put ROIs in the ROI Manager and as an overlay on ``imp``; returns the manager's count."""
        rm = self.roi_manager()
        if reset:
            rm.reset()
        overlay = self._j("ij.gui.Overlay")()
        for roi in rois:
            rm.addRoi(roi)
            overlay.add(roi)
        imp.setOverlay(overlay)
        return int(rm.getCount())

    # ------------------------------------------------------------------ fosgate
    def active_image(self):
        imp = self._j("ij.WindowManager").getCurrentImage()
        if imp is None:
            raise RuntimeError("No image is open in ImageJ.")
        return imp

    def segment(self, client, model_id: str, imp=None, **predict_args) -> int:
        """Segment ``imp`` (default: the active image) with a fosgate model; cells go to the ROI Manager
        and the image overlay. Returns the number of cells."""
        import tifffile

        imp = imp or self.active_image()
        array = self.from_imageplus(imp)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "fosgate-image.tif"
            tifffile.imwrite(path, array, photometric="rgb" if array.ndim == 3 else "minisblack")
            slide = client.upload_slide(path)
            job = client.wait(client.predict(slide.slide_id, model_id, stem="fosgate-image", **predict_args).job_id)
            art = next(a for a in job.artifacts if a.name.endswith(".rois.zip"))
            data = client.download_artifact(art, Path(tmp) / art.name).read_bytes()
        return self.show_rois(imp, self.rois_from_zip(data))

    def send_roi_manager(self, client, imp=None, reviewer: str = "", region: tuple[int, int, int, int] | None = None):
        """Store the ROI Manager's cells (names not starting with 'region') as a label of ``imp``."""
        import tifffile

        imp = imp or self.active_image()
        rois = [r for r in self.roi_manager().getRoisAsArray()
                if not str(r.getName() or "").lower().startswith("region")]
        if not rois:
            raise RuntimeError("The ROI Manager holds no cells to send.")
        array = self.from_imageplus(imp)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "fosgate-image.tif"
            tifffile.imwrite(path, array, photometric="rgb" if array.ndim == 3 else "minisblack")
            slide = client.upload_slide(path)
        return client.add_label(slide.slide_id, region=region, source="human", reviewer=reviewer,
                                roi_zip=self.rois_to_zip(rois))
