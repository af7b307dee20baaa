-- Forwards each stable study's projection radiographs (CR/DX series) to the cxr-report gateway
-- over STOW-RS, through the DICOMweb server "cxr" declared in orthanc.json (DicomWeb.Servers).
-- A study is stable once no instance arrived for StableAge seconds. Other series (SR, PR, KO...)
-- stay here: the gateway only accepts chest radiographs, and our own SRs must not loop back.
function OnStableStudy(studyId, tags, metadata)
  local series = ParseJson(RestApiGet('/studies/' .. studyId .. '/series'))
  local resources = {}
  for _, s in pairs(series) do
    local modality = s['MainDicomTags']['Modality']
    if modality == 'CR' or modality == 'DX' then
      table.insert(resources, s['ID'])
    end
  end
  if #resources > 0 then
    local body = { Resources = resources, Synchronous = false }
    RestApiPost('/dicom-web/servers/cxr/stow', DumpJson(body, true))
  end
end
