// Fosgate Count Regions: count the cells in each region of the ROI Manager and save a CSV table.
//
// Regions are ROIs whose names start with "region" (e.g. "region:CA1"; draw them, press T, then
// rename them in the ROI Manager); all other ROIs are cells (e.g. loaded by Fosgate Segment).
// A cell belongs to a region when its centroid lies inside it. Writes region,cells,area_px,density.
// Scripted: ImageJ -batch Fosgate_Count_Regions.ijm "image=/path/img.tif;rois=/path/RoiSet.zip;csv=/path/out.csv"

args = getArgument();
image = argOr(args, "image", "");
rois = argOr(args, "rois", "");
csv = argOr(args, "csv", "");
if (image != "") open(image);
if (nImages == 0) { print("fosgate: open the image first."); exit; }
if (rois != "") { roiManager("reset"); roiManager("Open", rois); }
if (csv == "") {
  csv = getDirectory("image") + File.getNameWithoutExtension(getTitle()) + ".regions.csv";
  if (args == "") csv = File.saveDialog("Save the region counts as", csv);
}
n = roiManager("count");
regions = newArray(0);
cx = newArray(0);
cy = newArray(0);
for (i = 0; i < n; i++) {
  if (startsWith(toLowerCase(RoiManager.getName(i)), "region")) {
    regions = Array.concat(regions, i);
  } else {
    roiManager("select", i);
    List.setMeasurements;
    x = List.getValue("X"); y = List.getValue("Y");
    toUnscaled(x, y);
    cx = Array.concat(cx, x); cy = Array.concat(cy, y);
  }
}
if (regions.length == 0) { print("fosgate: no ROI is named 'region...'; name your regions first."); exit; }
table = "region,cells,area_px,cells_per_megapixel\n";
for (r = 0; r < regions.length; r++) {
  roiManager("select", regions[r]);
  name = RoiManager.getName(regions[r]);
  count = 0;
  for (c = 0; c < cx.length; c++) if (selectionContains(cx[c] - 0.5, cy[c] - 0.5)) count++;
  getStatistics(area);
  getPixelSize(unit, pw, ph);
  area = area / (pw * ph);
  table = table + name + "," + count + "," + d2s(area, 0) + "," + d2s(count / area * 1e6, 3) + "\n";
}
roiManager("deselect");
File.saveString(table, csv);
print("fosgate: region counts saved to " + csv);
print(table);

function argOr(text, key, fallback) {
  parts = split(text, ";");
  for (i = 0; i < parts.length; i++) {
    kv = split(parts[i], "=");
    if (kv.length >= 2 && String.trim(kv[0]) == key) return substring(parts[i], indexOf(parts[i], "=") + 1);
  }
  return fallback;
}
