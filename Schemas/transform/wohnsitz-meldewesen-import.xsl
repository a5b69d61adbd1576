<?xml version="1.0" encoding="UTF-8"?>
<!-- Wohnsitz-Anmeldung (urn:xoev-de:amtsbote:wohnsitz:1) into the Meldewesen import format
     (Schemas/fachverfahren/meldewesen-import.xsd). Parameters: deliveryId, receivedAt (xs:dateTime). -->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
                xmlns:wa="urn:xoev-de:amtsbote:wohnsitz:1" xmlns:bas="urn:xoev-de:amtsbote:basis:1"
                xmlns:mi="urn:amtsbote:fachverfahren:meldewesen-import:1"
                exclude-result-prefixes="wa bas">
  <xsl:output method="xml" encoding="UTF-8" indent="yes"/>
  <xsl:param name="deliveryId"/>
  <xsl:param name="receivedAt"/>

  <xsl:template match="/wa:wohnsitz.anmeldung.0101">
    <mi:meldewesenImport version="1.0">
      <mi:vorgang lieferung="{$deliveryId}" eingang="{$receivedAt}"
                  nachricht="{wa:nachrichtenkopf.g2g/bas:identifikation.nachricht/bas:nachrichtenUUID}"
                  gemeinde="{wa:wohnung/wa:anschrift/bas:gemeindeschluessel}">
        <xsl:if test="wa:nachrichtenkopf.g2g/bas:leistungsschluessel">
          <xsl:attribute name="leistung"><xsl:value-of select="wa:nachrichtenkopf.g2g/bas:leistungsschluessel"/></xsl:attribute>
        </xsl:if>
        <mi:art>Anmeldung</mi:art>
        <mi:einzugsdatum><xsl:value-of select="wa:einzugsdatum"/></mi:einzugsdatum>
        <xsl:apply-templates select="wa:wohnung/wa:anschrift"/>
        <xsl:apply-templates select="wa:person"/>
      </mi:vorgang>
    </mi:meldewesenImport>
  </xsl:template>

  <xsl:template match="wa:anschrift">
    <mi:anschrift>
      <mi:strasse><xsl:value-of select="bas:strasse"/></mi:strasse>
      <mi:hausnummer><xsl:value-of select="bas:hausnummer"/></mi:hausnummer>
      <mi:plz><xsl:value-of select="bas:postleitzahl"/></mi:plz>
      <mi:ort><xsl:value-of select="bas:ort"/></mi:ort>
      <xsl:if test="../wa:lage"><mi:zusatz><xsl:value-of select="../wa:lage"/></mi:zusatz></xsl:if>
    </mi:anschrift>
  </xsl:template>

  <xsl:template match="wa:person">
    <mi:person nummer="{wa:laufendeNummer}">
      <mi:familienname><xsl:value-of select="wa:natuerlichePerson/bas:familienname"/></mi:familienname>
      <mi:vornamen><xsl:value-of select="wa:natuerlichePerson/bas:vorname"/></mi:vornamen>
      <mi:geburtsdatum><xsl:value-of select="wa:natuerlichePerson/bas:geburtsdatum"/></mi:geburtsdatum>
      <mi:geschlecht><xsl:value-of select="wa:geschlecht/bas:code"/></mi:geschlecht>
      <mi:staatsangehoerigkeit><xsl:value-of select="wa:natuerlichePerson/bas:staatsangehoerigkeit/bas:code"/></mi:staatsangehoerigkeit>
    </mi:person>
  </xsl:template>
</xsl:stylesheet>
